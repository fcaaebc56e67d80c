-- Audit chains migration, step 3 of 3 (after schema.sql): every old row and
-- the old checkpoint become chain 0, unchanged (hashes do not cover `chain`,
-- so the chain verifies as before). Safe to rerun: rows already copied are
-- skipped by the UNIQUE (chain, seq).
INSERT INTO audit_log (seq, ts, request_id, sub, token_id, client_name, client_version, method, tool, outcome,
  http_status, duration_ms, input_json, output_bytes, output_sha256, output_excerpt, error_code, prev_hash, hash, chain)
SELECT seq, ts, request_id, sub, token_id, client_name, client_version, method, tool, outcome,
  http_status, duration_ms, input_json, output_bytes, output_sha256, output_excerpt, error_code, prev_hash, hash, 0
FROM audit_log_unchained WHERE true ORDER BY seq
ON CONFLICT DO NOTHING;
INSERT INTO audit_checkpoint (chain, last_seq, last_hash, pruned_at)
SELECT 0, last_seq, last_hash, pruned_at FROM audit_checkpoint_unchained WHERE true
ON CONFLICT DO NOTHING;
DROP TABLE audit_log_unchained;
DROP TABLE audit_checkpoint_unchained;
