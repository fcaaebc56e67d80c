-- Audit chains migration, step 1 of 3 (run by `npm run db:init` when audit_log
-- has no `chain` column; for a deployed D1 run the three steps by hand with
-- `wrangler d1 execute DB --remote --file ...`, schema.sql as step 2).
-- Moves the pre-chain tables aside; schema.sql then creates the new ones.
DROP INDEX IF EXISTS audit_by_ts;
DROP INDEX IF EXISTS audit_by_sub;
ALTER TABLE audit_log RENAME TO audit_log_unchained;
ALTER TABLE audit_checkpoint RENAME TO audit_checkpoint_unchained;
