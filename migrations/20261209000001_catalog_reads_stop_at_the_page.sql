-- Catalog searches that read about a page of shows, not every match
-- (issue 32: p99 at most 20 ms over 100,000 shows while a sale runs).

-- Tags in an index entry: the tags themselves may not fit one (20 of 50
-- characters, up to 4 kB), so each is also kept as a 64-bit hash (at most
-- 160 bytes in all). Searches narrow by the hashes, and check the page's
-- shows against the tags themselves (shows::search), so the lower-case
-- tags need not be stored as well.
ALTER TABLE shows ADD COLUMN tag_hashes bigint[] NOT NULL DEFAULT '{}';

CREATE FUNCTION tag_hashes(tags text[]) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(SELECT hashtextextended(lower(t), 0) FROM unnest(tags) AS t);

-- A restore (pg_dump) runs with an empty search_path, and the trigger
-- calls functions by name: it keeps the schema it was made in.
CREATE OR REPLACE FUNCTION shows_search_keys() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.document := show_document(NEW.name, NEW.venue, NEW.category, NEW.tags, NEW.description);
    NEW.name_words := ts_filter(NEW.document, '{a}');
    NEW.listing_words := ts_filter(NEW.document, '{a,b}');
    NEW.tag_hashes := tag_hashes(NEW.tags);
    RETURN NEW;
END
$$;

UPDATE shows SET tags = tags WHERE cardinality(tags) > 0;

-- Text and tag searches walk shows soonest first and stop after a page;
-- with the name's words (the first tier of relevance) and the tags'
-- hashes in the index, they test each show without reading the table (an
-- index-only scan). A name is at most 200 characters, so its words fit;
-- the other tiers' words may not, and are read from the table.
CREATE INDEX shows_by_start_idx ON shows (starts_at, id) INCLUDE (name_words, tag_hashes);
-- Reminders' range scans on `starts_at` use the index above.
DROP INDEX shows_starts_at_idx;
DROP INDEX shows_tags_idx;
ALTER TABLE shows DROP COLUMN tag_keys;
CREATE INDEX shows_tag_hashes_idx ON shows USING gin (tag_hashes);

-- "Near": a show's position as a point on the unit sphere in three
-- dimensions, where the straight-line distance (the chord) grows with the
-- great-circle distance. So an index orders shows nearest first (`<->`),
-- and the box around a chord's sphere holds every show that near, with no
-- special case at the poles or the antimeridian.
CREATE EXTENSION IF NOT EXISTS cube;

CREATE FUNCTION sphere_point(latitude float8, longitude float8)
    RETURNS cube
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN cube(ARRAY[cos(radians(latitude)) * cos(radians(longitude)),
                      cos(radians(latitude)) * sin(radians(longitude)),
                      sin(radians(latitude))]);

-- The chord of `km` along the great circle, on the sphere of
-- `great_circle_km`'s radius.
CREATE FUNCTION sphere_chord(km float8)
    RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN 2 * sin(least(km / 6371.0088, pi()) / 2);

CREATE INDEX shows_sphere_idx ON shows USING gist (sphere_point(latitude, longitude));
DROP INDEX shows_position_idx;
