-- Baton schema v2: runtime budget caps (`baton budget set`), overriding baton.toml's [budgets].
-- scope is `global`, `repo:<name>` or `task:<id>`; a NULL cap removes the cap for that scope.
CREATE TABLE budget_caps (
    scope TEXT PRIMARY KEY,
    cap_usd REAL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX agent_runs_started ON agent_runs (started_at);
