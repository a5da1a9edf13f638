-- Schema version 4: swarms, the durable task queue (leases, retries, dependencies).
CREATE TABLE swarms (
    name             TEXT PRIMARY KEY,
    runtime          TEXT NOT NULL,
    model            TEXT,
    skills           TEXT NOT NULL,             -- JSON list
    strategy         TEXT NOT NULL,
    min_agents       INTEGER NOT NULL,
    max_agents       INTEGER NOT NULL,
    target_per_agent INTEGER NOT NULL,          -- ready tasks per agent (autoscaler)
    desired          INTEGER NOT NULL,          -- agents wanted now
    capacity         INTEGER NOT NULL,          -- queue capacity (backpressure)
    status           TEXT NOT NULL,             -- active | destroyed
    created_at       TEXT NOT NULL
);

ALTER TABLE agents ADD COLUMN swarm TEXT;
CREATE INDEX agents_swarm ON agents(swarm) WHERE swarm IS NOT NULL;

CREATE TABLE tasks (
    id             TEXT PRIMARY KEY,
    swarm          TEXT,
    input          TEXT NOT NULL,
    priority       INTEGER NOT NULL,            -- 0 critical, 1 high, 2 normal, 3 low
    skills         TEXT NOT NULL,               -- JSON list
    max_attempts   INTEGER NOT NULL,
    timeout_s      REAL,
    status         TEXT NOT NULL,               -- queued (waiting on deps) | ready | running
                                                -- | succeeded | failed | cancelled | dead
    attempts       INTEGER NOT NULL DEFAULT 0,
    deps_pending   INTEGER NOT NULL DEFAULT 0,
    not_before     REAL NOT NULL DEFAULT 0,     -- unix time; retry backoff
    lease_token    TEXT,
    lease_agent    TEXT,
    lease_expires  REAL,
    exec_id        TEXT,
    result         TEXT,                        -- JSON ExecResult of the last attempt
    error          TEXT NOT NULL DEFAULT '',
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    finished_at    TEXT
);
CREATE INDEX tasks_ready ON tasks(priority) WHERE status = 'ready';  -- then rowid: FIFO
CREATE INDEX tasks_running_agent ON tasks(lease_agent) WHERE status = 'running';
CREATE INDEX tasks_running_lease ON tasks(lease_expires) WHERE status = 'running';
CREATE INDEX tasks_swarm_status ON tasks(swarm, status);

CREATE TABLE task_deps (
    task_id  TEXT NOT NULL,
    dep_id   TEXT NOT NULL,
    PRIMARY KEY (task_id, dep_id)
);
CREATE INDEX task_deps_dep ON task_deps(dep_id);
