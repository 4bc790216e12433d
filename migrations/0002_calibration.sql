-- tribunal store, schema 2: calibration sets and runs.
CREATE TABLE calibration_sets (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    document    TEXT    NOT NULL,   -- canonical calibration.v1 JSONL (header + items)
    items       INTEGER NOT NULL,
    labels      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,   -- unix ms
    updated_at  INTEGER NOT NULL
);

-- A calibration run is a job (same id) over the set's items; its report is written
-- once, when the job finishes.
CREATE TABLE calibration_runs (
    id          TEXT    PRIMARY KEY REFERENCES jobs (id),
    set_id      TEXT    NOT NULL REFERENCES calibration_sets (id),
    options     TEXT    NOT NULL,   -- JSON: seed, resamples, confidence, item mapping
    report      TEXT,               -- the agreement report, when finished
    finished_at INTEGER
);
CREATE INDEX calibration_runs_by_set ON calibration_runs (set_id);
