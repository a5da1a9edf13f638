-- Schema version 2: what each exec used and cost (the source of spend for budgets).
ALTER TABLE execs ADD COLUMN model TEXT;
ALTER TABLE execs ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE execs ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE execs ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE execs ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
-- Decimal as text; NULL means unknown (never zero for an unknown price).
ALTER TABLE execs ADD COLUMN cost_usd TEXT;
