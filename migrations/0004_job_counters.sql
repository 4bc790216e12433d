-- tribunal store, schema 4: a job's counters live in its own row, updated in the
-- transaction that records each item, so job status and job lists cost O(1) per job
-- whatever its size; each finished item keeps the small projection of its report
-- that summaries read (score facts), so a summary never parses whole reports.
ALTER TABLE jobs ADD COLUMN done          INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN failed        INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN abstained     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN calls         INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN input_tokens  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cost_usd      REAL    NOT NULL DEFAULT 0;

-- Jobs stored before this schema: their counters from their items, once.
UPDATE jobs SET
    done          = (SELECT COUNT(*) FROM job_items i WHERE i.job_id = jobs.id AND i.state = 'done'),
    failed        = (SELECT COUNT(*) FROM job_items i WHERE i.job_id = jobs.id AND i.state = 'failed'),
    abstained     = (SELECT COALESCE(SUM(i.abstained), 0) FROM job_items i WHERE i.job_id = jobs.id AND i.state != 'pending'),
    calls         = (SELECT COALESCE(SUM(i.calls), 0) FROM job_items i WHERE i.job_id = jobs.id AND i.state != 'pending'),
    input_tokens  = (SELECT COALESCE(SUM(i.input_tokens), 0) FROM job_items i WHERE i.job_id = jobs.id AND i.state != 'pending'),
    output_tokens = (SELECT COALESCE(SUM(i.output_tokens), 0) FROM job_items i WHERE i.job_id = jobs.id AND i.state != 'pending'),
    cost_usd      = (SELECT COALESCE(SUM(i.cost_usd), 0.0) FROM job_items i WHERE i.job_id = jobs.id AND i.state != 'pending');

-- `{format, case_id, score, tags}` of each done item's grade_report.v1, in a table of
-- its own: in `job_items` the column would sit behind the multi-kilobyte report, and
-- every summary would read the reports' pages to reach it. Items done before this
-- schema get their whole report, which reads the same way.
CREATE TABLE job_item_facts (
    job_id        TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    finished_seq  INTEGER NOT NULL,
    facts         TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
INSERT INTO job_item_facts (job_id, seq, finished_seq, facts)
    SELECT job_id, seq, finished_seq, result FROM job_items WHERE state = 'done';

-- A streamed submission's job is 'staging' while its items arrive (invisible to every
-- read, never run) and becomes 'queued' once all of them are stored and valid.
CREATE INDEX jobs_by_state ON jobs (state);
