-- Confirmed calls (README "Confirmation"): the audit outcome gains the four
-- rounds of a call the user must confirm — confirmation_requested,
-- confirmed (the change was applied), declined, expired. src/audit/chain.ts
-- AUDIT_OUTCOMES lists the same values.
--
-- SQLite cannot change a CHECK constraint in place, so the table is copied:
-- same columns in the same order, every row and value unchanged (the hashes
-- cover values, not the table), then the indexes are made again.
CREATE TABLE audit_log_0002 (
  seq             INTEGER NOT NULL,
  ts              TEXT NOT NULL,
  request_id      TEXT NOT NULL,
  sub             TEXT NOT NULL,
  token_id        TEXT NOT NULL,
  client_name     TEXT,
  client_version  TEXT,
  method          TEXT NOT NULL,
  tool            TEXT,
  outcome         TEXT NOT NULL CHECK (outcome IN
                    ('ok', 'tool_error', 'invalid_input', 'denied', 'rate_limited', 'timeout', 'error',
                     'confirmation_requested', 'confirmed', 'declined', 'expired')),
  http_status     INTEGER NOT NULL,
  duration_ms     INTEGER NOT NULL,
  input_json      TEXT,
  output_bytes    INTEGER,
  output_sha256   TEXT,
  output_excerpt  TEXT,
  error_code      TEXT,
  prev_hash       TEXT NOT NULL,
  hash            TEXT NOT NULL,
  chain           INTEGER NOT NULL DEFAULT 0,
  input_bytes       INTEGER,
  input_sha256      TEXT,
  count             INTEGER,
  first_request_id  TEXT,
  last_request_id   TEXT
);
INSERT INTO audit_log_0002 (seq, ts, request_id, sub, token_id, client_name, client_version, method, tool, outcome, http_status,
  duration_ms, input_json, output_bytes, output_sha256, output_excerpt, error_code, prev_hash, hash, chain,
  input_bytes, input_sha256, count, first_request_id, last_request_id)
SELECT seq, ts, request_id, sub, token_id, client_name, client_version, method, tool, outcome, http_status,
  duration_ms, input_json, output_bytes, output_sha256, output_excerpt, error_code, prev_hash, hash, chain,
  input_bytes, input_sha256, count, first_request_id, last_request_id
FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_0002 RENAME TO audit_log;
CREATE UNIQUE INDEX IF NOT EXISTS audit_by_chain_seq ON audit_log (chain, seq);
CREATE INDEX IF NOT EXISTS audit_by_ts ON audit_log (ts);
CREATE INDEX IF NOT EXISTS audit_by_sub ON audit_log (sub, ts);
