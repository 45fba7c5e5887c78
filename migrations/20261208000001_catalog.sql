-- The catalog (PRODUCT.md §5b): what a buyer searches a show by.

ALTER TABLE shows
    ADD COLUMN description   text CHECK (length(description) <= 5000),
    ADD COLUMN category      text CHECK (length(category) BETWEEN 1 AND 50),
    ADD COLUMN tags          text[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 20),
    ADD COLUMN venue_address text CHECK (length(venue_address) <= 500),
    ADD COLUMN latitude      double precision CHECK (latitude BETWEEN -90 AND 90),
    ADD COLUMN longitude     double precision CHECK (longitude BETWEEN -180 AND 180),
    ADD CONSTRAINT shows_position_whole CHECK ((latitude IS NULL) = (longitude IS NULL));

-- Tags match ignoring case, but are shown as given.
CREATE FUNCTION lower_tags(tags text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(SELECT lower(t) FROM unnest(tags) AS t);

-- What `q` searches, weighted so that a name match ranks first (A), then
-- venue, category and tags (B), then the description (C).
CREATE FUNCTION show_document(name text, venue text, category text, tags text[], description text)
    RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN setweight(to_tsvector('english'::regconfig, name), 'A')
        || setweight(to_tsvector('english'::regconfig,
               venue || ' ' || coalesce(category, '') || ' ' || array_to_string(tags, ' ')), 'B')
        || setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C');

-- The document; its words in the name (A), and in the name, venue,
-- category and tags (A and B): the tiers of relevance (shows::search),
-- stored because filtering a whole document by weight (`ts_filter`) costs
-- 10 to 20 µs a row; and the tags in lower case (what `tag` matches).
-- Kept by a trigger on the columns they are made of, not as generated
-- columns: PostgreSQL computes a stored generated column again on every
-- UPDATE, and every decision updates the show's counters.
ALTER TABLE shows
    ADD COLUMN document tsvector NOT NULL DEFAULT ''::tsvector,
    ADD COLUMN name_words tsvector NOT NULL DEFAULT ''::tsvector,
    ADD COLUMN listing_words tsvector NOT NULL DEFAULT ''::tsvector,
    ADD COLUMN tag_keys text[] NOT NULL DEFAULT '{}';

CREATE FUNCTION shows_search_keys() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.document := show_document(NEW.name, NEW.venue, NEW.category, NEW.tags, NEW.description);
    NEW.name_words := ts_filter(NEW.document, '{a}');
    NEW.listing_words := ts_filter(NEW.document, '{a,b}');
    NEW.tag_keys := lower_tags(NEW.tags);
    RETURN NEW;
END
$$;

CREATE TRIGGER shows_search_keys
    BEFORE INSERT OR UPDATE OF name, venue, category, tags, description ON shows
    FOR EACH ROW EXECUTE FUNCTION shows_search_keys();

UPDATE shows SET name = name;

-- Great-circle distance in km on a sphere of the Earth's mean radius
-- (haversine): within 0.5 % of the ellipsoid, plenty for "near me".
-- Neither function is STRICT, so that the planner inlines them (a call per
-- row costs four times the arithmetic); NULL still gives NULL, because
-- `greatest` drops only a NULL argument and the root itself is NULL then.
-- The clamp keeps rounding from taking `asin` past 1 for antipodes.
CREATE FUNCTION haversine_root(lat1 float8, lng1 float8, lat2 float8, lng2 float8)
    RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN sqrt(sin(radians(lat2 - lat1) / 2) ^ 2
                + cos(radians(lat1)) * cos(radians(lat2)) * sin(radians(lng2 - lng1) / 2) ^ 2);

CREATE FUNCTION great_circle_km(lat1 float8, lng1 float8, lat2 float8, lng2 float8)
    RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 2 * 6371.0088 * asin(haversine_root(lat1, lng1, lat2, lng2)
                                / greatest(1, haversine_root(lat1, lng1, lat2, lng2)));

-- Each tier its own index, so that a tier nothing matches costs an index
-- probe, and the planner knows how many shows each tier holds.
CREATE INDEX shows_document_idx ON shows USING gin (document);
CREATE INDEX shows_name_words_idx ON shows USING gin (name_words);
CREATE INDEX shows_listing_words_idx ON shows USING gin (listing_words);
CREATE INDEX shows_category_idx ON shows (lower(category), starts_at);
CREATE INDEX shows_tags_idx ON shows USING gin (tag_keys);
-- "Near": a box around the point narrows the candidates (a 2-D index, so
-- both coordinates narrow), the distance decides.
CREATE INDEX shows_position_idx ON shows USING gist (point(longitude, latitude));
