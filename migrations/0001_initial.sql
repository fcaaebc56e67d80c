-- mcp-bastion: D1 schema, migration 0001 (the project's own tables).
--
-- Migrations (this folder, `migrations_dir` in wrangler.toml) are applied in
-- name order, once each, recorded in d1_migrations: by `npm run db:init` and
-- `npm run dev` (local), by the test setup, and on deploy with
--   npx wrangler d1 migrations apply DB --remote
-- Add tables with a new migration (README "Schema changes"); never edit one
-- that was applied. Every statement here is idempotent (IF NOT EXISTS), so a
-- database created before migrations existed (from the former schema.sql)
-- takes this one as a no-op and records it.
--
-- Two kinds of tables live here:
--   * business data the tools read and write: customers, orders, products,
--     tickets, and the full-text index `search_index` kept in sync by triggers;
--   * the tamper-evident audit log (`audit_log`, `audit_checkpoint`), which no
--     tool can read: `execute_query` only reaches the business tables.
--
-- Identifiers are short prefixed strings ("cus_001", "ord_0001", ...) so that
-- an id pasted into the wrong tool is refused as "not found" rather than
-- silently matching another entity. Times are ISO-8601 UTC text.
-- Money is stored in integer cents, never floats.

-- A company that buys from us. `email`, `phone` and `address` are personal
-- data: the policy marks them sensitive, so the audit log redacts them.
CREATE TABLE IF NOT EXISTS customers (
  id          TEXT PRIMARY KEY,             -- "cus_001"
  name        TEXT NOT NULL,                -- contact person's full name
  company     TEXT NOT NULL,                -- company name
  email       TEXT NOT NULL UNIQUE,         -- contact email (sensitive)
  phone       TEXT NOT NULL,                -- contact phone, E.164 (sensitive)
  address     TEXT NOT NULL,                -- postal address, one line (sensitive)
  tier        TEXT NOT NULL DEFAULT 'standard'
              CHECK (tier IN ('standard', 'gold', 'platinum')),
  created_at  TEXT NOT NULL                 -- when the customer signed up
);

-- What we sell.
CREATE TABLE IF NOT EXISTS products (
  id           TEXT PRIMARY KEY,            -- "prd_001"
  sku          TEXT NOT NULL UNIQUE,        -- stock keeping unit, e.g. "HW-0001"
  name         TEXT NOT NULL,
  description  TEXT NOT NULL,
  category     TEXT NOT NULL,               -- e.g. "hardware", "software"
  price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
  stock        INTEGER NOT NULL CHECK (stock >= 0),  -- units on hand
  created_at   TEXT NOT NULL
);

-- One order of one product by one customer. `status` follows a state
-- machine enforced by update_order (src/db/order-status.ts):
--   pending -> paid | cancelled;  paid -> shipped | cancelled;
--   shipped -> delivered;         delivered and cancelled are final.
CREATE TABLE IF NOT EXISTS orders (
  id           TEXT PRIMARY KEY,            -- "ord_0001"
  customer_id  TEXT NOT NULL REFERENCES customers(id),
  product_id   TEXT NOT NULL REFERENCES products(id),
  quantity     INTEGER NOT NULL CHECK (quantity > 0),
  total_cents  INTEGER NOT NULL CHECK (total_cents >= 0),
  status       TEXT NOT NULL
               CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')),
  note         TEXT,                        -- last note left by update_order
  created_at   TEXT NOT NULL,
  updated_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_by_status   ON orders (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_by_created  ON orders (created_at DESC, id DESC);

-- A support ticket opened by an agent through create_ticket.
CREATE TABLE IF NOT EXISTS tickets (
  id           TEXT PRIMARY KEY,            -- "tkt_" + random hex
  customer_id  TEXT NOT NULL REFERENCES customers(id),
  subject      TEXT NOT NULL,
  body         TEXT NOT NULL,
  priority     TEXT NOT NULL DEFAULT 'normal'
               CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
  status       TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
  created_by   TEXT NOT NULL,               -- `sub` of the token that opened it
  created_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_by_customer ON tickets (customer_id, created_at DESC);

-- Full-text index behind the `search` tool: one document per customer, order
-- and product. `kind` is 'customer' | 'order' | 'product', `ref_id` the row's
-- id. Customer documents hold name and company only, never email or phone, so
-- search results cannot be used to enumerate personal data.
-- Its shadow tables (search_index_data, _idx, _content, _docsize, _config)
-- are internal and never queryable through execute_query.
CREATE VIRTUAL TABLE IF NOT EXISTS search_index USING fts5(
  kind UNINDEXED,
  ref_id UNINDEXED,
  title,
  body,
  tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER IF NOT EXISTS customers_ai AFTER INSERT ON customers BEGIN
  INSERT INTO search_index (kind, ref_id, title, body)
  VALUES ('customer', new.id, new.name, new.company || ' ' || new.tier);
END;
CREATE TRIGGER IF NOT EXISTS customers_au AFTER UPDATE ON customers BEGIN
  DELETE FROM search_index WHERE kind = 'customer' AND ref_id = old.id;
  INSERT INTO search_index (kind, ref_id, title, body)
  VALUES ('customer', new.id, new.name, new.company || ' ' || new.tier);
END;
CREATE TRIGGER IF NOT EXISTS customers_ad AFTER DELETE ON customers BEGIN
  DELETE FROM search_index WHERE kind = 'customer' AND ref_id = old.id;
END;

CREATE TRIGGER IF NOT EXISTS products_ai AFTER INSERT ON products BEGIN
  INSERT INTO search_index (kind, ref_id, title, body)
  VALUES ('product', new.id, new.name, new.sku || ' ' || new.category || ' ' || new.description);
END;
CREATE TRIGGER IF NOT EXISTS products_au AFTER UPDATE ON products BEGIN
  DELETE FROM search_index WHERE kind = 'product' AND ref_id = old.id;
  INSERT INTO search_index (kind, ref_id, title, body)
  VALUES ('product', new.id, new.name, new.sku || ' ' || new.category || ' ' || new.description);
END;
CREATE TRIGGER IF NOT EXISTS products_ad AFTER DELETE ON products BEGIN
  DELETE FROM search_index WHERE kind = 'product' AND ref_id = old.id;
END;

CREATE TRIGGER IF NOT EXISTS orders_ai AFTER INSERT ON orders BEGIN
  INSERT INTO search_index (kind, ref_id, title, body)
  VALUES ('order', new.id, new.id || ' ' || new.status, coalesce(new.note, ''));
END;
CREATE TRIGGER IF NOT EXISTS orders_au AFTER UPDATE ON orders BEGIN
  DELETE FROM search_index WHERE kind = 'order' AND ref_id = old.id;
  INSERT INTO search_index (kind, ref_id, title, body)
  VALUES ('order', new.id, new.id || ' ' || new.status, coalesce(new.note, ''));
END;
CREATE TRIGGER IF NOT EXISTS orders_ad AFTER DELETE ON orders BEGIN
  DELETE FROM search_index WHERE kind = 'order' AND ref_id = old.id;
END;

-- The audit log: one row per `tools/call` of an authenticated caller,
-- whatever the outcome, except past the refusal budget: refusals (denied,
-- invalid_input, rate_limited) keep only a 256-byte argument excerpt plus
-- size and digest, and once one `sub` has had the policy's refusalBudget
-- (default 120 per 60 s window) of refusal rows in a window, its further
-- refusals in that window are counted in one aggregate row per outcome
-- (`count`, `first_request_id`, `last_request_id`), sealed when the window
-- closes. So sum(coalesce(count, 1)) over refusal rows is the exact number
-- of refused calls. Tamper-evident: the rows of each chain form a SHA-256
-- hash chain
--   hash = hex SHA-256 of UTF-8( prev_hash || "\n" || canonical(row without hash) )
-- where canonical() is a JSON object of every column from `seq` to
-- `prev_hash`, keys in the order below, absent values as null, then the
-- columns after `chain` that are not NULL (canonicalRow
-- in src/audit/chain.ts; `chain` is not hashed: a row moved to another chain
-- breaks the links of both). Each chain has exactly one writer, its
-- AuditSequencer Durable Object (src/audit/sequencer.ts): it seals rows in
-- arrival order and group-commits them here, so `seq` is gap-free per chain
-- and (chain, seq) is unique as a last line of defence. Callers are spread
-- over AUDIT_CHAINS chains (default 1) by a hash of `sub`. Only a prefix of a
-- chain is ever pruned (audit_checkpoint). `npm run audit:verify` walks
-- every chain.
-- What is never stored: the bearer token, the Authorization header, and the
-- values of fields the policy marks sensitive (they appear as "[redacted]").
-- An audit_log created before chains existed (seq UNIQUE, no `chain`) is
-- rebuilt by `npm run db:init` (scripts/db-init.ts); see README "Audit log".
CREATE TABLE IF NOT EXISTS audit_log (
  seq             INTEGER NOT NULL,         -- 1, 2, 3 ... gap-free within its chain, assigned by the chain's sequencer
  ts              TEXT NOT NULL,            -- ISO-8601 UTC time the call started
  request_id      TEXT NOT NULL,            -- the X-Request-Id of the HTTP exchange
  sub             TEXT NOT NULL,            -- the token's subject
  token_id        TEXT NOT NULL,            -- the token's `jti`, or "sha256:" + 16 hex of its digest; never the token
  client_name     TEXT,                     -- MCP clientInfo.name when the client sent it
  client_version  TEXT,                     -- MCP clientInfo.version
  method          TEXT NOT NULL,            -- JSON-RPC method ("tools/call")
  tool            TEXT,                     -- tool name as requested (may be unknown)
  outcome         TEXT NOT NULL CHECK (outcome IN  -- 0002_confirmation_outcomes.sql adds four values
                    ('ok', 'tool_error', 'invalid_input', 'denied', 'rate_limited', 'timeout', 'error')),
  http_status     INTEGER NOT NULL,         -- status of the HTTP response
  duration_ms     INTEGER NOT NULL,         -- wall time from request start to outcome
  input_json      TEXT,                     -- tool arguments: redacted JSON, capped at 4 KiB (refusals: 256 bytes; aggregate rows: NULL)
  output_bytes    INTEGER,                  -- size of the tool result JSON in bytes
  output_sha256   TEXT,                     -- hex SHA-256 of the REDACTED tool result JSON (redacted as the excerpt, uncapped);
                                            -- NULL for tools without an excerpt (execute_query: aliases defeat key redaction),
                                            -- so it reveals no redacted value; output_bytes is the unredacted size
  output_excerpt  TEXT,                     -- redacted, capped (1 KiB) excerpt of the result
  error_code      TEXT,                     -- stable machine code for failures, e.g. "insufficient_scope"
  prev_hash       TEXT NOT NULL,            -- hash of row seq-1 (or of the checkpoint, or 64 zeros)
  hash            TEXT NOT NULL,            -- SHA-256 hex, see above
  chain           INTEGER NOT NULL DEFAULT 0, -- which chain: 0 .. AUDIT_CHAINS-1 (not hashed)
  -- Added later: hashed only when not NULL (after prev_hash, in this order), so
  -- older rows keep their hashes. `npm run db:init` adds them to an older table.
  input_bytes       INTEGER,                -- refusals: bytes of the whole redacted arguments JSON (input_json is a 256-byte excerpt)
  input_sha256      TEXT,                   -- refusals: hex SHA-256 of the whole REDACTED arguments JSON
  count             INTEGER,                -- aggregate rows: refusals of `sub` with this `outcome` folded into the row (>= 1)
  first_request_id  TEXT,                   -- aggregate rows: request_id of the first refusal counted
  last_request_id   TEXT                    -- aggregate rows: request_id of the last refusal counted
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_by_chain_seq ON audit_log (chain, seq);
CREATE INDEX IF NOT EXISTS audit_by_ts ON audit_log (ts);
CREATE INDEX IF NOT EXISTS audit_by_sub ON audit_log (sub, ts);

-- Where a chain starts after retention pruned old rows: the seq and hash
-- of the last row deleted, so verification resumes from it. One row per
-- chain that was ever pruned.
CREATE TABLE IF NOT EXISTS audit_checkpoint (
  chain      INTEGER PRIMARY KEY,           -- the chain (audit_log.chain)
  last_seq   INTEGER NOT NULL,              -- seq of the newest pruned row
  last_hash  TEXT NOT NULL,                 -- its hash: prev_hash of the first kept row
  pruned_at  TEXT NOT NULL                  -- when the last prune ran
);
