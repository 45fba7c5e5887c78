-- Catalog searches that read about a page of shows, not every match
-- (issue 32: p99 at most 20 ms over 100,000 shows while a sale runs).

-- The first tier of a text search (every word in the name) walks shows
-- soonest first and stops after a page; with the name's words in the
-- index it never reads the table to test a show (an index-only scan). A
-- name is at most 200 characters, so its words fit an index entry; the
-- other tiers' words may not, and are read from the table.
CREATE INDEX shows_name_words_by_start_idx ON shows (starts_at, id) INCLUDE (name_words);
-- Reminders' range scans on `starts_at` use the index above.
DROP INDEX shows_starts_at_idx;

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

-- A restore (pg_dump) runs with an empty search_path, and the trigger
-- calls functions by name: it keeps the schema it was made in.
ALTER FUNCTION shows_search_keys() SET search_path FROM CURRENT;
