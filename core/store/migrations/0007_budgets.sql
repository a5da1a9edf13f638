-- Schema version 7: budgets. Amounts are integers: micro-dollars (unit 'usd') or tokens,
-- so that a reservation is one exact conditional UPDATE per scope.
CREATE TABLE budgets (
    scope TEXT NOT NULL,
    unit TEXT NOT NULL CHECK (unit IN ('usd', 'tokens')),
    limit_amount INTEGER NOT NULL CHECK (limit_amount >= 0),
    period TEXT NOT NULL DEFAULT 'none'
        CHECK (period IN ('none', 'daily', 'weekly', 'monthly')),
    period_start TEXT NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, unit)
);
-- An estimate held against every budget that applies, until settled or expired.
CREATE TABLE budget_reservations (
    id TEXT PRIMARY KEY,
    exec_id TEXT,
    task_id TEXT,
    scopes TEXT NOT NULL,  -- JSON list of the scopes it applies to
    usd INTEGER NOT NULL,  -- estimate, micro-dollars
    tokens INTEGER NOT NULL,  -- estimate, tokens
    held TEXT NOT NULL DEFAULT '[]',  -- JSON [[scope, unit, amount]] actually reserved
    created_at REAL NOT NULL,  -- unix seconds (the engine's clock)
    settled_at REAL,
    actual_usd INTEGER,
    actual_tokens INTEGER
);
CREATE INDEX budget_reservations_open ON budget_reservations(created_at)
    WHERE settled_at IS NULL;
-- Finished periods (a daily budget's yesterday...), and cleared budgets.
CREATE TABLE budget_history (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    unit TEXT NOT NULL,
    limit_amount INTEGER NOT NULL,
    spent INTEGER NOT NULL,
    period TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT NOT NULL
);
