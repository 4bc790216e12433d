-- tribunal store, schema 5: a finished job's summary figures (the summary document
-- without its per-example entries), computed once when its last item is recorded, so
-- reading the summary of a finished job streams its entries and never re-runs the
-- bootstraps. `figures_upto` is the number of finished items they cover; NULL for
-- jobs finished before this schema or not finished yet (computed on request).
ALTER TABLE jobs ADD COLUMN figures      TEXT;
ALTER TABLE jobs ADD COLUMN figures_upto INTEGER;
