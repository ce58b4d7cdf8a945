-- Baton schema v15: the lessons journal (SPEC §10). One row per slug: an auto-detector that sees
-- the same kind of event again updates its row; within the dedup window only `updated_at` moves.
-- `repo` and `stage` scope a lesson (NULL: everywhere); `tags` is a JSON array of strings; `hits`
-- counts the prompts it was injected into.
CREATE TABLE lessons (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    source TEXT NOT NULL,
    repo TEXT,
    stage TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    task TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    last_hit_at INTEGER
);
CREATE INDEX lessons_scope ON lessons (repo, stage);
