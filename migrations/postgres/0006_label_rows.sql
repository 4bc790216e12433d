-- tribunal store (Postgres), schema 6: labels as rows (as SQLite's schema 9). A set's
-- current labels are one row per (set, item, rater, kind), written without rewriting
-- the set's document (which from now on holds the items only). Sets stored before
-- this schema are moved over once, at startup, by the store (`move_labels_to_rows`);
-- a set whose move is done has its `calibration_label_counts` row.
CREATE TABLE calibration_labels (
    set_id      TEXT    NOT NULL REFERENCES calibration_sets (id),
    item        TEXT    NOT NULL,
    rater       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    pos         BIGINT  NOT NULL,
    author      TEXT,
    PRIMARY KEY (set_id, item, rater, kind)
);
CREATE INDEX calibration_labels_by_pos ON calibration_labels (set_id, pos);

-- Per set: label count, next position, last label write. Its row is also the per-set
-- lock label writers take (`FOR UPDATE`), so replicas number history entries in turn.
CREATE TABLE calibration_label_counts (
    set_id      TEXT    PRIMARY KEY REFERENCES calibration_sets (id),
    labels      BIGINT  NOT NULL,
    next_pos    BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

ALTER TABLE calibration_label_history ADD COLUMN imported_by TEXT;
