-- tribunal store, schema 7: undo of a label write. An undo is a history entry like any
-- other (old and new value, who, when) that also names the entry it undoes, so an
-- undone write is never undone twice and "my last label" skips it.
ALTER TABLE calibration_label_history ADD COLUMN undoes INTEGER;   -- n of the undone entry
CREATE INDEX calibration_label_history_undoes ON calibration_label_history (set_id, undoes);
CREATE INDEX calibration_label_history_by_author ON calibration_label_history (set_id, author, n);
