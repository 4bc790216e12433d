-- tribunal store, schema 8: a job's cached and reasoning tokens beside its input and
-- output tokens, counted like them (each item's own figures in `job_items`, their sums
-- in the job's row, in the transaction that records the item), so job status shows how
-- much of a job's input the provider billed at its cached price. Rows stored before
-- this schema read 0: backfilling would parse every stored report at startup, and each
-- of those reports keeps its own figures in its `usage`.
ALTER TABLE jobs ADD COLUMN cached_input_tokens      INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN reasoning_tokens         INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_items ADD COLUMN cached_input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_items ADD COLUMN reasoning_tokens    INTEGER NOT NULL DEFAULT 0;
