-- Adds the audit_log columns schema.sql lists after `chain` (compact refusal
-- rows and refusal aggregates) to an audit_log created before them. Every old
-- row gets NULL, and a NULL column is not hashed, so every old hash stays
-- valid. `npm run db:init` runs only the lines whose column is missing; for a
-- deployed D1 run it once, BEFORE deploying a Worker that writes these columns:
--   wrangler d1 execute DB --remote --file scripts/sql/audit-refusal-columns.sql
ALTER TABLE audit_log ADD COLUMN input_bytes INTEGER;
ALTER TABLE audit_log ADD COLUMN input_sha256 TEXT;
ALTER TABLE audit_log ADD COLUMN count INTEGER;
ALTER TABLE audit_log ADD COLUMN first_request_id TEXT;
ALTER TABLE audit_log ADD COLUMN last_request_id TEXT;
