-- tribunal store on Postgres, schema 1: the SQLite schema's tables as of its schema 4
-- (rubrics, jobs with their counters, items, score facts, verdict cache, calibration
-- sets, runs and label history), plus what several replicas sharing one database
-- need: item leases (token and expiry from the database clock) and staging leases.
-- Times are unix milliseconds, like SQLite's, so both stores return the same values.

-- The database clock in unix ms. Leases are compared with it only, so replicas whose
-- clocks disagree still agree on which lease has expired.
CREATE FUNCTION tribunal_now_ms() RETURNS BIGINT
    LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;

CREATE TABLE rubrics (
    id          TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    document    TEXT    NOT NULL,   -- canonical rubric.v1 JSON
    digest      TEXT    NOT NULL,   -- blake3 of the canonical document
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE jobs (
    id            TEXT    PRIMARY KEY,
    state         TEXT    NOT NULL,   -- staging | queued | running | done | cancelled
    total         BIGINT  NOT NULL,
    seed          BIGINT  NOT NULL,
    owner         TEXT,
    created_at    BIGINT  NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    -- A staging job (a streamed submission still arriving) is removed once this
    -- passes: its uploader refreshes it with every batch, so only a replica that
    -- died mid-upload leaves one to expire. NULL once committed.
    staging_until BIGINT,
    done          BIGINT  NOT NULL DEFAULT 0,
    failed        BIGINT  NOT NULL DEFAULT 0,
    abstained     BIGINT  NOT NULL DEFAULT 0,
    calls         BIGINT  NOT NULL DEFAULT 0,
    input_tokens  BIGINT  NOT NULL DEFAULT 0,
    output_tokens BIGINT  NOT NULL DEFAULT 0,
    cost_usd      DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_created ON jobs (created_at, id);
CREATE INDEX jobs_by_owner ON jobs (owner, created_at, id);
CREATE INDEX jobs_by_state ON jobs (state);

CREATE TABLE job_items (
    job_id        TEXT    NOT NULL REFERENCES jobs (id),
    seq           BIGINT  NOT NULL,
    case_id       TEXT    NOT NULL,
    input         TEXT    NOT NULL,
    state         TEXT    NOT NULL,   -- pending | done | failed
    result        TEXT,
    finished_seq  BIGINT,
    abstained     BIGINT  NOT NULL DEFAULT 0,
    calls         BIGINT  NOT NULL DEFAULT 0,
    input_tokens  BIGINT  NOT NULL DEFAULT 0,
    output_tokens BIGINT  NOT NULL DEFAULT 0,
    cost_usd      DOUBLE PRECISION NOT NULL DEFAULT 0,
    finished_at   BIGINT,
    -- The replica run holding the item, and until when (database clock). A pending
    -- item with no lease, or an expired one, may be claimed; a result is written
    -- only by the holder of the current lease.
    lease_token   TEXT,
    lease_until   BIGINT,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX job_items_by_state ON job_items (job_id, state, seq);
CREATE INDEX job_items_by_finish ON job_items (job_id, finished_seq);

CREATE TABLE job_item_facts (
    job_id        TEXT    NOT NULL,
    seq           BIGINT  NOT NULL,
    finished_seq  BIGINT  NOT NULL,
    facts         TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE verdict_cache (
    key         BYTEA   PRIMARY KEY,
    answer      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE calibration_sets (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    owner       TEXT,
    document    TEXT    NOT NULL,
    items       BIGINT  NOT NULL,
    labels      BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE calibration_runs (
    id          TEXT    PRIMARY KEY REFERENCES jobs (id),
    set_id      TEXT    NOT NULL REFERENCES calibration_sets (id),
    options     TEXT    NOT NULL,
    report      TEXT,
    finished_at BIGINT
);
CREATE INDEX calibration_runs_by_set ON calibration_runs (set_id);

CREATE TABLE calibration_label_history (
    set_id      TEXT    NOT NULL REFERENCES calibration_sets (id),
    n           BIGINT  NOT NULL,
    item        TEXT    NOT NULL,
    rater       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    previous    TEXT,
    author      TEXT,
    at          BIGINT  NOT NULL,
    PRIMARY KEY (set_id, n)
);
CREATE INDEX calibration_label_history_by_item ON calibration_label_history (set_id, item, n);
