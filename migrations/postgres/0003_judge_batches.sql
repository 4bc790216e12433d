-- tribunal store on Postgres, schema 3 (as SQLite's schema 6): provider Batch API
-- batches a judge submitted, so a restarted server polls them again instead of paying for their requests twice.
-- `status`: open (not final at the provider) | completed (final, entries not all
-- handed out) | failed (failed, expired or cancelled; entries retried) | delivered.
-- `custom_ids` is the JSON array of the entries' ids, in file order.
CREATE TABLE judge_batches (
    id            TEXT PRIMARY KEY,
    judge         TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    status        TEXT NOT NULL,
    custom_ids    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    finished_at   BIGINT
);
CREATE INDEX judge_batches_by_status ON judge_batches (judge, status);

-- Which jobs had an entry in which batch (a job's batch counters).
CREATE TABLE judge_batch_jobs (
    batch_id TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    PRIMARY KEY (batch_id, job_id)
);
CREATE INDEX judge_batch_jobs_by_job ON judge_batch_jobs (job_id);
