-- Schema version 5: what the live read side needs.
-- A task may require a runtime (a shell command must never land on an LLM agent).
ALTER TABLE tasks ADD COLUMN runtime TEXT;
-- One exec's output is read by its id (`godel exec show`).
CREATE INDEX agent_output_exec ON agent_output(exec_id, seq) WHERE exec_id IS NOT NULL;
-- A task that will not run again reads `failed`, as users expect; "dead" is gone.
UPDATE tasks SET status = 'failed' WHERE status = 'dead';
