-- Schema version 3: the database keeps the audit head in step with the log itself, so
-- an append is one statement and no writer can forget the head.
CREATE TRIGGER audit_head_follow AFTER INSERT ON audit_log
BEGIN
    INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, NEW.seq, NEW.entry_hash)
    ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, entry_hash = excluded.entry_hash;
END;
