-- Baton schema v18: the retro stage (SPEC §3, §10). A lesson has a status: `active` lessons reach
-- prompts, an agent's `proposed` lesson waits for a human, who makes it `active` or `rejected`.
-- `task_proposals` holds the next tasks a retro proposed, one per (proposing task, title); a
-- human's accept creates the task (`created_task_id`), a reject closes it.
ALTER TABLE lessons ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
CREATE INDEX lessons_status ON lessons (status);
CREATE TABLE task_proposals (
    id INTEGER PRIMARY KEY,
    from_task_id INTEGER NOT NULL REFERENCES tasks (id),
    repo TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'proposed',
    created_at INTEGER NOT NULL,
    decided_at INTEGER,
    decided_by TEXT,
    created_task_id INTEGER REFERENCES tasks (id),
    UNIQUE (from_task_id, title)
);
CREATE INDEX task_proposals_status ON task_proposals (status, id);
