-- tribunal store (Postgres), schema 4: undo of a label write (as SQLite's schema 7).
-- An undo is a history entry that also names the entry it undoes, so an undone write
-- is never undone twice and "my last label" skips it.
ALTER TABLE calibration_label_history ADD COLUMN undoes BIGINT;
CREATE INDEX calibration_label_history_undoes ON calibration_label_history (set_id, undoes);
CREATE INDEX calibration_label_history_by_author ON calibration_label_history (set_id, author, n);
