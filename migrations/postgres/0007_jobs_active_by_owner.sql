-- tribunal store on Postgres, schema 8 (as SQLite's schema 11): the concurrent-jobs quota
-- counts an owner's unfinished jobs in the transaction that creates a job, under a
-- per-owner advisory lock (the store's `ACTIVE_JOBS_WHERE`, the same predicate). This
-- partial index holds unfinished jobs only, so the count reads those rows, not the
-- owner's whole history, and the lock is held no longer than that.
CREATE INDEX jobs_active_by_owner ON jobs (owner) WHERE state NOT IN ('done', 'cancelled');
