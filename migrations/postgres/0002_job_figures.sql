-- tribunal store on Postgres, schema 2 (as SQLite's schema 5): a finished job's
-- summary figures (the summary document without its per-example entries), computed
-- once when its last item is recorded, and the number of finished items they cover.
ALTER TABLE jobs ADD COLUMN figures      TEXT;
ALTER TABLE jobs ADD COLUMN figures_upto BIGINT;
