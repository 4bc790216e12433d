-- tribunal store on Postgres, schema 5 (as SQLite's schema 8): a job's cached and
-- reasoning tokens beside its input and output tokens, counted like them (each item's
-- own figures in `job_items`, their sums in the job's row, in the statement that
-- records the item). Rows stored before this schema read 0; each earlier report keeps
-- its own figures in its `usage`.
ALTER TABLE jobs ADD COLUMN cached_input_tokens      BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN reasoning_tokens         BIGINT NOT NULL DEFAULT 0;
ALTER TABLE job_items ADD COLUMN cached_input_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE job_items ADD COLUMN reasoning_tokens    BIGINT NOT NULL DEFAULT 0;
