-- Godel store, schema version 1: agents, execs, output, audit log.
CREATE TABLE agents (
    id              TEXT PRIMARY KEY,
    runtime         TEXT NOT NULL,
    name            TEXT,
    model           TEXT,
    skills          TEXT NOT NULL,          -- JSON list
    workspace       TEXT NOT NULL,
    pid             INTEGER,
    pid_started_at  REAL,
    status          TEXT NOT NULL,
    status_source   TEXT NOT NULL,
    status_reason   TEXT NOT NULL DEFAULT '',
    status_at       TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    spec            TEXT NOT NULL           -- JSON AgentSpec
);
CREATE UNIQUE INDEX agents_name ON agents(name) WHERE name IS NOT NULL
    AND status NOT IN ('stopped', 'lost', 'failed');

CREATE TABLE execs (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    input       TEXT NOT NULL,
    status      TEXT NOT NULL,
    exit_code   INTEGER,
    reason      TEXT NOT NULL DEFAULT '',
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    actor       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX execs_agent ON execs(agent_id, started_at);
CREATE INDEX execs_running ON execs(status) WHERE status = 'running';

CREATE TABLE agent_output (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id  TEXT NOT NULL,
    exec_id   TEXT,
    stream    TEXT NOT NULL,
    at        TEXT NOT NULL,
    data      TEXT NOT NULL
);
CREATE INDEX agent_output_agent ON agent_output(agent_id, seq);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    ts          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    payload     TEXT NOT NULL,              -- canonical JSON
    result      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    entry_hash  TEXT NOT NULL
);
CREATE INDEX audit_subject ON audit_log(subject);

-- The head is written in the same transaction as each append; it catches a cut tail.
CREATE TABLE audit_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    seq         INTEGER NOT NULL,
    entry_hash  TEXT NOT NULL
);

-- Append-only: the application never updates or deletes audit rows.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
