-- tribunal store, schema 9: labels as rows. A set's current labels are one row per
-- (set, item, rater, kind), written without rewriting the set's document (which from
-- now on holds the items only, each with `"labels": []`). Sets stored before this
-- schema are moved over once, at startup, by the store (`move_labels_to_rows`): their
-- documents are JSONL, which SQL cannot split portably; a set whose move is done has
-- its `calibration_label_counts` row.
CREATE TABLE calibration_labels (
    set_id      TEXT    NOT NULL REFERENCES calibration_sets (id),
    item        TEXT    NOT NULL,
    rater       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,   -- human | judge
    value       TEXT    NOT NULL,   -- JSON: a category name (or true/false) or a number
    pos         INTEGER NOT NULL,   -- order within the set: an item's labels read in it
    author      TEXT,               -- API key that wrote the current value; NULL from an upload
    PRIMARY KEY (set_id, item, rater, kind)
);
CREATE INDEX calibration_labels_by_pos ON calibration_labels (set_id, pos);

-- Per set: the label count, the next label position and the time of the last label
-- write. Kept apart from `calibration_sets`, whose row holds the (large) document: an
-- update of that row would rewrite the document.
CREATE TABLE calibration_label_counts (
    set_id      TEXT    PRIMARY KEY REFERENCES calibration_sets (id),
    labels      INTEGER NOT NULL,
    next_pos    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL    -- unix ms
);

-- An admin writing a human label on behalf of another rater (an import) is recorded.
ALTER TABLE calibration_label_history ADD COLUMN imported_by TEXT;
