-- tribunal store, schema 1.
CREATE TABLE rubrics (
    id          TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    document    TEXT    NOT NULL,   -- canonical rubric.v1 JSON
    digest      TEXT    NOT NULL,   -- blake3 of the canonical document
    created_at  INTEGER NOT NULL,   -- unix ms
    PRIMARY KEY (id, version)
);

CREATE TABLE jobs (
    id          TEXT    PRIMARY KEY,
    state       TEXT    NOT NULL,   -- queued | running | done | cancelled
    total       INTEGER NOT NULL,
    seed        INTEGER NOT NULL,
    owner       TEXT,               -- API key name, when auth is on
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER
);
CREATE INDEX jobs_by_created ON jobs (created_at, id);

CREATE TABLE job_items (
    job_id        TEXT    NOT NULL REFERENCES jobs (id),
    seq           INTEGER NOT NULL,   -- position in the submitted input, from 0
    case_id       TEXT    NOT NULL,
    input         TEXT    NOT NULL,   -- the item as submitted (one JSON line)
    state         TEXT    NOT NULL,   -- pending | done | failed
    result        TEXT,               -- grade_report.v1, or {"case_id","error"} when failed
    finished_seq  INTEGER,            -- completion order within the job (for follow)
    abstained     INTEGER NOT NULL DEFAULT 0,
    calls         INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL    NOT NULL DEFAULT 0,
    finished_at   INTEGER,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX job_items_by_state ON job_items (job_id, state, seq);
CREATE INDEX job_items_by_finish ON job_items (job_id, finished_seq);

-- Second tier of the verdict cache: a restart never pays twice for a judge call.
CREATE TABLE verdict_cache (
    key         BLOB    PRIMARY KEY,
    answer      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
