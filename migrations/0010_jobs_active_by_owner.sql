-- tribunal store, schema 11: the concurrent-jobs quota counts an owner's unfinished
-- jobs in the writer's transaction that creates a job (the store's
-- `ACTIVE_JOBS_WHERE`, the same predicate). This partial index holds unfinished jobs
-- only, so the count reads those rows, not the owner's whole history, and holds the
-- one writer no longer than that.
CREATE INDEX jobs_active_by_owner ON jobs (owner) WHERE state NOT IN ('done', 'cancelled');
