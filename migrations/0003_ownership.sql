-- tribunal store, schema 3: who owns calibration sets, and the history of labels
-- added through the API.
ALTER TABLE calibration_sets ADD COLUMN owner TEXT;   -- API key name, when auth is on
CREATE INDEX jobs_by_owner ON jobs (owner, created_at, id);

-- Every label written through the API, in order: who wrote it, when, and the value
-- it replaced (NULL for a new label). The set's document holds the current labels.
CREATE TABLE calibration_label_history (
    set_id      TEXT    NOT NULL REFERENCES calibration_sets (id),
    n           INTEGER NOT NULL,   -- order of writes within the set, from 0
    item        TEXT    NOT NULL,
    rater       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,   -- human | judge
    value       TEXT    NOT NULL,   -- JSON: the label as written
    previous    TEXT,               -- JSON: the label it replaced
    author      TEXT,               -- API key name; NULL without auth
    at          INTEGER NOT NULL,   -- unix ms
    PRIMARY KEY (set_id, n)
);
CREATE INDEX calibration_label_history_by_item ON calibration_label_history (set_id, item, n);
