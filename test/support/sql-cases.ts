// The SQL sandbox's test tables, shared by the unit test of the guard
// (test/unit/sql-guard.test.ts) and the integration test that runs them
// against a real D1 (test/integration/sql-execute.test.ts).
//
// Attack strings come from public SQL-injection and sandbox-bypass reports
// and from SQLite's own grammar (statement kinds, schema names, eponymous
// virtual tables, table-valued functions, recursive CTEs). Each one names the
// GuardCode it must be refused with and a fragment of the message, so a
// refusal for the wrong reason fails the test.
import type { GuardCode } from '../../src/sql/guard.ts'

export const BUSINESS_TABLES = ['customers', 'orders', 'products', 'tickets'] as const

export interface AttackCase {
  /** the property it defends, as a test name */
  name: string
  sql: string
  code: GuardCode
  /** a fragment of the refusal message */
  message: string
}

export interface LegitCase {
  name: string
  sql: string
  /** rows expected from the demo data (scripts/demo-data.ts), when pinned */
  rows?: Record<string, unknown>[]
  /** row count expected, when the rows themselves are not pinned */
  rowCount?: number
}

const attack = (name: string, sql: string, code: GuardCode, message: string): AttackCase => ({ name, sql, code, message })

const ONE_STATEMENT = 'only one statement is allowed'
const NOT_QUERYABLE = 'is not queryable'

export const ATTACKS: AttackCase[] = [
  // stacked statements and the COMMIT escape
  attack('stacked DROP after a SELECT', 'SELECT 1; DROP TABLE customers', 'multiple_statements', ONE_STATEMENT),
  attack('stacked DELETE after a SELECT', 'SELECT * FROM customers; DELETE FROM orders', 'multiple_statements', ONE_STATEMENT),
  attack('COMMIT escape before DROP', 'COMMIT; DROP TABLE orders', 'multiple_statements', ONE_STATEMENT),
  attack('COMMIT escape between SELECT and DELETE', 'SELECT 1; COMMIT; DELETE FROM orders', 'multiple_statements', '(found 3: SELECT, COMMIT, DELETE)'),
  attack('ATTACH on a new line after a SELECT', "SELECT 1;\nATTACH DATABASE 'file:x.db' AS x", 'multiple_statements', ONE_STATEMENT),
  attack('a comment hiding a semicolon does not hide the next statement', 'SELECT 1 /* ; */; DELETE FROM orders --', 'multiple_statements', ONE_STATEMENT),
  attack('two SELECTs are still two statements', 'SELECT 1; SELECT * FROM audit_log', 'multiple_statements', ONE_STATEMENT),

  // comments before and inside keywords
  attack('empty block comment before DELETE', '/**/DELETE FROM orders', 'not_select', 'only SELECT statements are allowed (got DELETE)'),
  attack('line comment before DELETE', '-- harmless\nDELETE FROM orders', 'not_select', 'got DELETE'),
  attack('a comment saying SELECT before UPDATE', "/* SELECT */ UPDATE orders SET status = 'cancelled'", 'not_select', 'got UPDATE'),
  attack('block comment splitting DELETE', 'DEL/**/ETE FROM orders', 'parse_error', 'syntax error at line 1, column 1'),
  attack('unterminated comment', 'SELECT 1 /* DROP TABLE orders', 'parse_error', 'syntax error'),

  // case and whitespace games
  attack('mixed-case DELETE with tabs and newlines', 'dElEtE\tFROM\norders', 'not_select', 'got DELETE'),
  attack('leading whitespace before UPDATE', "\n\t  UpDaTe orders SET note = 'x'", 'not_select', 'got UPDATE'),
  attack('NUL byte truncating the statement for SQLite', 'SELECT 1\u0000; DROP TABLE orders', 'invalid_character', 'control character U+0000'),
  attack('vertical tab as whitespace', 'SELECT\u000b* FROM audit_log', 'invalid_character', 'U+000B'),

  // unicode look-alikes
  attack('Cyrillic e in SELECT', 'S\u0415LECT * FROM audit_log', 'invalid_character', 'non-ASCII'),
  attack('full-width SELECT', '\uff33\uff25\uff2c\uff25\uff23\uff34 * FROM audit_log', 'invalid_character', 'non-ASCII character U+FF33'),
  attack('zero-width space inside DELETE', 'DE\u200bLETE FROM orders', 'invalid_character', 'U+200B'),
  attack('zero-width space inside a table name', 'SELECT * FROM audit\u200blog', 'invalid_character', 'U+200B'),

  // DML hidden in or behind a CTE
  attack('DELETE inside a CTE', 'WITH x AS (DELETE FROM orders RETURNING *) SELECT * FROM x', 'parse_error', 'syntax error at line 1, column 42'),
  attack('INSERT inside a CTE', 'WITH x AS (INSERT INTO tickets DEFAULT VALUES RETURNING id) SELECT * FROM x', 'parse_error', 'syntax error'),
  attack('DELETE after a WITH clause', 'WITH x AS (SELECT 1) DELETE FROM orders', 'not_select', 'got DELETE'),
  attack('UPDATE after a WITH clause', "WITH x AS (SELECT 1) UPDATE orders SET status = 'paid'", 'not_select', 'got UPDATE'),

  // every other statement kind
  attack('PRAGMA table_info', 'PRAGMA table_info(audit_log)', 'not_select', 'got PRAGMA'),
  attack('PRAGMA writable_schema', 'PRAGMA writable_schema = ON', 'not_select', 'got PRAGMA'),
  attack('ATTACH DATABASE', "ATTACH DATABASE ':memory:' AS evil", 'not_select', 'got ATTACH'),
  attack('DETACH DATABASE', 'DETACH DATABASE evil', 'not_select', 'got DETACH'),
  attack('VACUUM INTO a file', "VACUUM INTO '/tmp/copy.db'", 'not_select', 'got VACUUM'),
  attack('REINDEX', 'REINDEX customers', 'not_select', 'got REINDEX'),
  attack('ANALYZE', 'ANALYZE', 'not_select', 'got ANALYZE'),
  attack('BEGIN', 'BEGIN IMMEDIATE TRANSACTION', 'not_select', 'got BEGIN'),
  attack('COMMIT alone', 'COMMIT', 'not_select', 'got COMMIT'),
  attack('ROLLBACK', 'ROLLBACK', 'not_select', 'got ROLLBACK'),
  attack('SAVEPOINT', 'SAVEPOINT s1', 'not_select', 'got SAVEPOINT'),
  attack('RELEASE', 'RELEASE s1', 'not_select', 'got RELEASE'),
  attack('EXPLAIN of a forbidden read', 'EXPLAIN QUERY PLAN SELECT * FROM audit_log', 'not_select', 'got EXPLAIN'),
  attack('INSERT', "INSERT INTO tickets (id) VALUES ('tkt_x')", 'not_select', 'got INSERT'),
  attack('REPLACE', "REPLACE INTO customers (id) VALUES ('cus_001')", 'not_select', 'got REPLACE'),
  attack('UPSERT', "INSERT INTO customers (id) VALUES ('cus_001') ON CONFLICT(id) DO UPDATE SET tier = 'platinum'", 'not_select', 'got INSERT'),
  attack('UPDATE', "UPDATE orders SET status = 'cancelled'", 'not_select', 'got UPDATE'),
  attack('DELETE', 'DELETE FROM orders', 'not_select', 'got DELETE'),
  attack('CREATE TABLE', 'CREATE TABLE x (a)', 'not_select', 'got CREATE TABLE'),
  attack('CREATE TEMP VIEW over the audit log', 'CREATE TEMP VIEW v AS SELECT * FROM audit_log', 'not_select', 'got CREATE VIEW'),
  attack('CREATE TRIGGER', 'CREATE TRIGGER t AFTER INSERT ON orders BEGIN DELETE FROM orders; END', 'not_select', 'got CREATE TRIGGER'),
  attack('DROP TABLE', 'DROP TABLE audit_log', 'not_select', 'got DROP TABLE'),
  attack('ALTER TABLE', 'ALTER TABLE customers ADD COLUMN x', 'not_select', 'got ALTER TABLE'),

  // schema catalogue, pragma functions and internal tables
  attack('pragma_table_info table function', "SELECT * FROM pragma_table_info('audit_log')", 'table_function_not_allowed', 'table-valued function pragma_table_info is not allowed'),
  attack('pragma eponymous table without arguments', 'SELECT * FROM pragma_database_list', 'table_not_allowed', NOT_QUERYABLE),
  attack('pragma function after IN', "SELECT 1 WHERE 'seq' IN pragma_table_info('audit_log')", 'table_function_not_allowed', 'pragma_table_info'),
  attack('json_each table function', "SELECT * FROM json_each('[1,2]')", 'table_function_not_allowed', 'json_each'),
  attack('generate_series table function', 'SELECT * FROM generate_series(1, 1000000000)', 'table_function_not_allowed', 'generate_series'),
  attack('sqlite_master', 'SELECT * FROM sqlite_master', 'table_not_allowed', 'table sqlite_master is not queryable'),
  attack('sqlite_schema', 'SELECT sql FROM sqlite_schema', 'table_not_allowed', 'table sqlite_schema is not queryable'),
  attack('sqlite_temp_master', 'SELECT * FROM sqlite_temp_master', 'table_not_allowed', 'sqlite_temp_master'),
  attack('main.sqlite_master', 'SELECT * FROM main.sqlite_master', 'table_not_allowed', 'sqlite_master'),
  attack('quoted and upper-case sqlite_master', 'SELECT * FROM [SQLITE_MASTER]', 'table_not_allowed', NOT_QUERYABLE),
  attack('sqlite_sequence', 'SELECT * FROM sqlite_sequence', 'table_not_allowed', 'sqlite_sequence'),
  attack('Cloudflare internal table', 'SELECT * FROM _cf_KV', 'table_not_allowed', NOT_QUERYABLE),
  attack('D1 migrations table', 'SELECT * FROM d1_migrations', 'table_not_allowed', NOT_QUERYABLE),
  attack('FTS shadow table search_index_data', 'SELECT * FROM search_index_data', 'table_not_allowed', 'table search_index_data is not queryable'),
  attack('FTS shadow table search_index_config', 'SELECT * FROM search_index_config', 'table_not_allowed', 'search_index_config'),
  attack('FTS shadow table search_index_content', 'SELECT * FROM search_index_content', 'table_not_allowed', 'search_index_content'),
  attack('the FTS table itself', "SELECT * FROM search_index WHERE search_index MATCH 'gold'", 'table_not_allowed', 'table search_index is not queryable'),

  // the audit log, wherever it hides
  attack('audit_log directly', 'SELECT * FROM audit_log', 'table_not_allowed', 'table audit_log is not queryable'),
  attack('audit_log in upper case and quotes', 'SELECT * FROM "AUDIT_LOG"', 'table_not_allowed', NOT_QUERYABLE),
  attack('audit_checkpoint', 'SELECT * FROM audit_checkpoint', 'table_not_allowed', 'audit_checkpoint'),
  attack('audit_log in a FROM subquery', 'SELECT * FROM (SELECT * FROM audit_log)', 'table_not_allowed', 'audit_log'),
  attack('audit_log in a CTE', 'WITH a AS (SELECT * FROM audit_log) SELECT * FROM a', 'table_not_allowed', 'audit_log'),
  attack('audit_log in a JOIN', 'SELECT c.id FROM customers c JOIN audit_log a ON a.sub = c.id', 'table_not_allowed', 'audit_log'),
  attack('audit_log in a comma join', 'SELECT c.id FROM customers c, main.audit_log a', 'table_not_allowed', 'audit_log'),
  attack('audit_log in a scalar subquery in the select list', 'SELECT (SELECT count(*) FROM audit_log) AS n', 'table_not_allowed', 'audit_log'),
  attack('audit_log in a scalar subquery in WHERE', 'SELECT * FROM customers WHERE id = (SELECT sub FROM audit_log LIMIT 1)', 'table_not_allowed', 'audit_log'),
  attack('audit_log in IN (SELECT ...)', 'SELECT * FROM customers WHERE id IN (SELECT sub FROM audit_log)', 'table_not_allowed', 'audit_log'),
  attack('audit_log as a bare IN table', "SELECT 1 WHERE 'x' IN audit_log", 'table_not_allowed', 'audit_log'),
  attack('a string literal naming the audit log after IN', "SELECT 1 IN 'audit_log'", 'table_not_allowed', 'table audit_log is not queryable'),
  attack('a row value probing an FTS shadow table through IN', "SELECT ('version', 4) IN 'search_index_config'", 'table_not_allowed', 'search_index_config'),
  attack('a string-named table function after IN', "SELECT 'seq' IN 'pragma_table_info'('audit_log')", 'table_function_not_allowed', 'pragma_table_info'),
  attack('a string-named function call', "SELECT 'load_extension'('x')", 'function_not_allowed', 'plain identifiers'),
  attack('audit_checkpoint in EXISTS', 'SELECT 1 WHERE EXISTS (SELECT 1 FROM audit_checkpoint)', 'table_not_allowed', 'audit_checkpoint'),
  attack('audit_log in a UNION member', 'SELECT id FROM customers UNION SELECT hash FROM audit_log', 'table_not_allowed', 'audit_log'),
  attack('audit_log behind a CTE in a compound', 'WITH a AS (SELECT 1) SELECT * FROM a UNION ALL SELECT seq FROM audit_log', 'table_not_allowed', 'audit_log'),
  attack('audit_log in ORDER BY', 'SELECT id FROM customers ORDER BY (SELECT max(seq) FROM audit_log)', 'table_not_allowed', 'audit_log'),
  attack('audit_log in CASE', 'SELECT CASE WHEN 1 THEN (SELECT hash FROM audit_log) END', 'table_not_allowed', 'audit_log'),
  attack('audit_log in a function argument', 'SELECT length((SELECT group_concat(hash) FROM audit_log))', 'table_not_allowed', 'audit_log'),
  attack('audit_log in a JOIN condition', 'SELECT c.id FROM customers c JOIN orders o ON o.customer_id = (SELECT sub FROM audit_log)', 'table_not_allowed', 'audit_log'),
  attack('audit_log in a window definition', 'SELECT sum(1) OVER (ORDER BY (SELECT seq FROM audit_log)) FROM customers', 'table_not_allowed', 'audit_log'),
  attack('a CTE named like the audit log', 'WITH audit_log AS (SELECT 1) SELECT * FROM audit_log', 'table_not_allowed', 'a CTE may not be named audit_log'),
  attack('a forward CTE reference reaching a real table', 'WITH a AS (SELECT * FROM secrets), secrets AS (SELECT 1) SELECT * FROM a', 'table_not_allowed', 'table secrets is not queryable'),
  attack('a line comment glued to a number, hiding a quote', "SELECT 1--'\n, (SELECT count(*) FROM audit_log) --'", 'table_not_allowed', 'audit_log'),
  attack('a block comment hiding a quote', "SELECT 1/*'\n*/, (SELECT count(*) FROM audit_log) --'", 'table_not_allowed', 'audit_log'),
  attack('backslash is not an escape in SQLite strings', "SELECT 'a\\', (SELECT count(*) FROM audit_log) --'", 'table_not_allowed', 'audit_log'),
  attack('a table that is not on the allow-list', 'SELECT * FROM secrets', 'table_not_allowed', 'the queryable tables are: customers, orders, products, tickets'),

  // other schemas
  attack('the temp schema', 'SELECT * FROM temp.x', 'schema_not_allowed', 'schema temp is not allowed'),
  attack('an attached database', 'SELECT * FROM evil.customers', 'schema_not_allowed', 'schema evil is not allowed'),
  attack('temp.sqlite_temp_master', 'SELECT * FROM temp.sqlite_temp_master', 'schema_not_allowed', 'schema temp'),
  attack('an attached database after IN', "SELECT 1 WHERE 'x' IN evil.t", 'schema_not_allowed', 'schema evil'),

  // functions
  attack('load_extension', "SELECT load_extension('x')", 'function_not_allowed', 'function load_extension is not allowed'),
  attack('load_extension in upper case, nested', "SELECT upper(LOAD_EXTENSION('/tmp/x.so', 'init'))", 'function_not_allowed', 'function LOAD_EXTENSION is not allowed'),
  attack('randomblob memory bomb', 'SELECT randomblob(1e9)', 'function_not_allowed', 'function randomblob is not allowed'),
  attack('zeroblob memory bomb', 'SELECT length(zeroblob(1000000000))', 'function_not_allowed', 'function zeroblob is not allowed'),
  attack('printf width bomb', "SELECT printf('%.*c', 1000000000, 'x')", 'function_not_allowed', 'function printf is not allowed'),
  attack('format width bomb', "SELECT format('%.*c', 1000000000, 'x')", 'function_not_allowed', 'function format is not allowed'),
  attack('nested replace bomb', "SELECT replace(replace(replace(name, 'a', name), 'a', name), 'a', name) FROM customers", 'function_not_allowed', 'replace() nested inside replace()'),
  attack('replace bomb nested through another function', "SELECT replace(upper(replace(name, 'a', name)), 'A', name) FROM customers", 'function_not_allowed', 'replace() nested inside replace()'),
  attack('nested hex() bomb (each level doubles the length)', `WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 10000) SELECT n, ${'hex('.repeat(20)}'a'${')'.repeat(20)} AS big FROM r`, 'function_not_allowed', 'hex() nested inside hex()'),
  attack('hex() nested through another function', 'SELECT hex(upper(hex(name))) FROM customers', 'function_not_allowed', 'hex() nested inside hex()'),
  attack('nested quote() doubling quote characters', `SELECT quote(quote(quote(quote('''')))) AS q`, 'function_not_allowed', 'quote() nested inside quote()'),
  attack('nested json_quote() doubling backslashes', `SELECT json_quote(json_quote(json_quote('"'))) AS q`, 'function_not_allowed', 'json_quote() nested inside json_quote()'),
  attack('nested concat_ws() repeating its separator', "SELECT concat_ws(concat_ws(name, '', '', '', ''), '', '', '', '') FROM customers", 'function_not_allowed', 'concat_ws() nested inside concat_ws()'),
  attack('replace() inside group_concat()', "SELECT group_concat(replace(name, 'a', name)) FROM customers", 'function_not_allowed', 'replace() nested inside group_concat()'),
  attack('hex() in the separator of group_concat()', 'SELECT group_concat(name, hex(name)) FROM customers', 'function_not_allowed', 'hex() nested inside group_concat()'),
  attack('group_concat() in a scalar subquery inside hex()', 'SELECT hex((SELECT group_concat(name) FROM customers)) AS h', 'function_not_allowed', 'group_concat() nested inside hex()'),
  attack('string_agg() as the replacement of replace()', "SELECT replace(name, 'a', (SELECT string_agg(name, ',') FROM customers)) FROM customers", 'function_not_allowed', 'string_agg() nested inside replace()'),
  attack('char flood', 'SELECT char(68, 82, 79, 80)', 'function_not_allowed', 'function char is not allowed'),
  attack('sqlite_version probe', 'SELECT sqlite_version()', 'function_not_allowed', 'function sqlite_version is not allowed'),
  attack('compile option probe', "SELECT sqlite_compileoption_used('ENABLE_FTS5')", 'function_not_allowed', 'sqlite_compileoption_used'),
  attack('readfile', "SELECT readfile('/etc/passwd')", 'function_not_allowed', 'function readfile is not allowed'),
  attack('writefile', "SELECT writefile('/tmp/x', 'y')", 'function_not_allowed', 'function writefile is not allowed'),
  attack('fts3_tokenizer pointer leak', "SELECT fts3_tokenizer('simple')", 'function_not_allowed', 'fts3_tokenizer'),
  attack('schema-qualified function', "SELECT main.lower('a')", 'function_not_allowed', 'schema-qualified'),
  attack('a forbidden function in WHERE', "SELECT id FROM customers WHERE length(randomblob(1000000)) > 0", 'function_not_allowed', 'randomblob'),

  // recursion
  attack('recursive CTE without LIMIT', 'WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c', 'unbounded_recursion', 'recursive CTE c has no LIMIT'),
  attack('recursive CTE without the RECURSIVE keyword', 'WITH c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c', 'unbounded_recursion', 'has no LIMIT'),
  attack('recursive CTE with a huge LIMIT', 'WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 100000000) SELECT count(*) FROM c', 'unbounded_recursion', 'at most 10000'),
  attack('recursive CTE with LIMIT -1 (no limit)', 'WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT -1) SELECT count(*) FROM c', 'unbounded_recursion', 'literal LIMIT'),
  attack('recursive CTE with a computed LIMIT', 'WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT (SELECT 1e12)) SELECT count(*) FROM c', 'unbounded_recursion', 'literal LIMIT'),
  attack('recursive CTE with a huge OFFSET', 'WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 10 OFFSET 1000000000) SELECT count(*) FROM c', 'unbounded_recursion', 'at most 10000'),
  attack('LIMIT only inside the recursive member subquery', 'WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM (SELECT n FROM c LIMIT 1)) SELECT count(*) FROM c', 'unbounded_recursion', 'has no LIMIT'),
  attack('unbounded recursion hidden in a subquery', 'SELECT * FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT n FROM c)', 'unbounded_recursion', 'has no LIMIT'),

  // parameters
  attack('a positional parameter', 'SELECT * FROM customers WHERE id = ?', 'parameter_not_allowed', 'bound parameters such as ? are not allowed'),
  attack('a numbered parameter', 'SELECT * FROM customers WHERE id = ?1', 'parameter_not_allowed', '?1'),
  attack('a named parameter', 'SELECT * FROM customers WHERE id = :id', 'parameter_not_allowed', ':id'),
  attack('a dollar parameter', 'SELECT * FROM customers WHERE id = $id', 'parameter_not_allowed', '$id'),
  attack('an at parameter', 'SELECT * FROM customers WHERE id = @id', 'parameter_not_allowed', '@id'),

  // other syntax
  attack('RAISE outside a trigger', "SELECT RAISE(ABORT, 'x')", 'unsupported_syntax', 'raise expr is not supported'),
  attack('a typed literal SQLite does not have', "SELECT DATE '2026-01-01'", 'unsupported_syntax', 'date literal'),

  // size and emptiness
  attack('an over-long query', `SELECT 1 -- ${'x'.repeat(1000)}`, 'too_long', 'at most 1000 are allowed'),
  attack('an empty query', '', 'empty', 'the query is empty'),
  attack('whitespace only', ' \n\t ', 'empty', 'the query is empty'),
  attack('comments only', '-- nothing here\n/* or here */', 'empty', 'the query is empty'),
  attack('semicolons only', ';;', 'empty', 'the query is empty'),
  attack('parser backtracking bomb (nested WITH)', 'WITH a AS (WITH a AS (WITH a AS (WITH a AS (WITH a AS (WITH a AS (WITH a AS (WITH a AS (SELECT', 'too_complex', 'too complex'),
  attack('parser backtracking bomb (nested IN)', `SELECT ${'1 IN ('.repeat(16)}1 +`, 'too_complex', 'too complex'),
  attack('parser backtracking bomb (unclosed parentheses)', `SELECT ${'('.repeat(40)}1`, 'too_complex', 'too complex'),
]

export const LEGIT: LegitCase[] = [
  { name: 'count of orders', sql: 'SELECT count(*) AS n FROM orders', rows: [{ n: 300 }] },
  { name: 'count of customers', sql: 'SELECT count(*) AS n FROM customers', rows: [{ n: 60 }] },
  { name: 'keywords in any case', sql: 'select COUNT(*) as n from PRODUCTS', rows: [{ n: 120 }] },
  { name: 'a trailing semicolon', sql: 'SELECT count(*) AS n FROM products;', rows: [{ n: 120 }] },
  { name: 'a schema-qualified business table', sql: 'SELECT count(*) AS n FROM main.customers', rows: [{ n: 60 }] },
  { name: 'the word drop inside a LIKE pattern', sql: "SELECT * FROM customers WHERE name LIKE '%drop%'", rowCount: 0 },
  {
    name: 'DML words inside a string literal',
    sql: "SELECT id, 'delete from orders; drop table customers' AS note FROM customers WHERE id = 'cus_001'",
    rows: [{ id: 'cus_001', note: 'delete from orders; drop table customers' }],
  },
  {
    name: 'identifiers named deleted, update and drop',
    sql: `SELECT id AS deleted, 'x' AS "update", 1 AS "drop" FROM orders WHERE id = 'ord_0001'`,
    rows: [{ deleted: 'ord_0001', update: 'x', drop: 1 }],
  },
  {
    name: 'leading whitespace and comments, trailing comment',
    sql: '\n\t -- how many tickets?\n /* report */ SELECT count(*) AS n FROM tickets -- trailing\n',
    rows: [{ n: 0 }],
  },
  { name: 'a trailing comment holding a DROP', sql: 'SELECT 1 AS one -- ; DROP TABLE customers', rows: [{ one: 1 }] },
  {
    name: 'a CTE with an aggregate',
    sql: 'WITH spent AS (SELECT customer_id, sum(total_cents) AS cents FROM orders GROUP BY customer_id) SELECT sum(cents) = (SELECT sum(total_cents) FROM orders) AS same FROM spent',
    rows: [{ same: 1 }],
  },
  {
    name: 'a bounded recursive CTE',
    sql: 'WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq LIMIT 10) SELECT sum(n) AS total FROM seq',
    rows: [{ total: 55 }],
  },
  {
    name: 'a bounded recursive CTE over dates',
    sql: "WITH RECURSIVE d(day) AS (SELECT date('2026-01-01') UNION ALL SELECT date(day, '+1 day') FROM d LIMIT 3) SELECT day FROM d",
    rows: [{ day: '2026-01-01' }, { day: '2026-01-02' }, { day: '2026-01-03' }],
  },
  {
    name: 'a join',
    sql: "SELECT o.id, c.id AS customer FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = 'ord_0001'",
    rowCount: 1,
  },
  {
    name: 'a three-way LEFT JOIN',
    sql: 'SELECT count(*) AS n FROM orders o LEFT JOIN customers c ON c.id = o.customer_id LEFT JOIN products p ON p.id = o.product_id',
    rows: [{ n: 300 }],
  },
  {
    name: 'GROUP BY with HAVING',
    sql: 'SELECT sum(n) AS total FROM (SELECT status, count(*) AS n FROM orders GROUP BY status HAVING count(*) > 0)',
    rows: [{ total: 300 }],
  },
  {
    name: 'a compound select',
    sql: "SELECT id FROM customers WHERE id = 'cus_001' UNION ALL SELECT id FROM products WHERE id = 'prd_001'",
    rows: [{ id: 'cus_001' }, { id: 'prd_001' }],
  },
  {
    name: 'a compound select with ORDER BY',
    sql: "SELECT id FROM customers WHERE id <= 'cus_002' UNION SELECT id FROM products WHERE id <= 'prd_002' ORDER BY 1 DESC",
    rows: [{ id: 'prd_002' }, { id: 'prd_001' }, { id: 'cus_002' }, { id: 'cus_001' }],
  },
  {
    name: 'ORDER BY and LIMIT survive the wrapper',
    sql: 'SELECT id FROM orders ORDER BY id DESC LIMIT 3',
    rows: [{ id: 'ord_0300' }, { id: 'ord_0299' }, { id: 'ord_0298' }],
  },
  {
    name: 'IN (SELECT ...)',
    sql: "SELECT count(*) = (SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.tier = 'platinum') AS same FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE tier = 'platinum')",
    rows: [{ same: 1 }],
  },
  {
    name: 'IN a CTE by name',
    sql: "WITH vip AS (SELECT id FROM customers WHERE tier = 'platinum') SELECT count(*) > 0 AS some FROM orders WHERE customer_id IN vip",
    rows: [{ some: 1 }],
  },
  {
    name: 'EXISTS',
    sql: 'SELECT count(*) <= 60 AS ok FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)',
    rows: [{ ok: 1 }],
  },
  {
    name: 'CASE',
    sql: "SELECT id, CASE WHEN price_cents >= 0 THEN 'priced' ELSE 'free' END AS band FROM products WHERE id = 'prd_001'",
    rows: [{ id: 'prd_001', band: 'priced' }],
  },
  {
    name: 'date functions',
    sql: "SELECT date('2026-01-05', '+1 month') AS d, strftime('%Y', created_at) AS y, julianday('2026-01-02') - julianday('2026-01-01') AS days FROM orders WHERE id = 'ord_0001'",
    rows: [{ d: '2026-02-05', y: '2026', days: 1 }],
  },
  {
    name: 'a window function',
    sql: 'SELECT id, row_number() OVER (ORDER BY id) AS rn FROM customers ORDER BY id LIMIT 2',
    rows: [{ id: 'cus_001', rn: 1 }, { id: 'cus_002', rn: 2 }],
  },
  { name: 'VALUES', sql: "VALUES (1, 'a'), (2, 'b')", rows: [{ column1: 1, column2: 'a' }, { column1: 2, column2: 'b' }] },
  { name: 'JSON functions', sql: `SELECT json_extract('{"a":41}', '$.a') + 1 AS a`, rows: [{ a: 42 }] },
  {
    name: 'a single replace and string functions',
    sql: "SELECT replace(id, 'cus_', 'customer-') AS r, upper(substr(id, 1, 3)) AS p, length(id) AS l FROM customers WHERE id = 'cus_001'",
    rows: [{ r: 'customer-001', p: 'CUS', l: 7 }],
  },
  {
    name: 'one hex() and one replace() side by side',
    sql: "SELECT hex(id) AS h, replace(id, '_', '-') AS r FROM customers WHERE id = 'cus_001'",
    rows: [{ h: '6375735F303031', r: 'cus-001' }],
  },
  {
    name: 'growth functions at different levels of a subquery',
    sql: "SELECT group_concat(h, ',') AS hs FROM (SELECT hex(id) AS h FROM customers ORDER BY id LIMIT 2)",
    rows: [{ hs: '6375735F303031,6375735F303032' }],
  },
  {
    name: 'concat() inside group_concat() (concat never multiplies)',
    sql: "SELECT group_concat(concat(id, ':', length(id)), ';') AS pairs FROM (SELECT id FROM customers ORDER BY id LIMIT 2)",
    rows: [{ pairs: 'cus_001:7;cus_002:7' }],
  },
  {
    name: 'json_group_array() of json_object()',
    sql: "SELECT json_group_array(json_object('id', id)) AS a FROM (SELECT id FROM customers ORDER BY id LIMIT 2)",
    rows: [{ a: '[{"id":"cus_001"},{"id":"cus_002"}]' }],
  },
  { name: 'a quoted identifier that is a keyword', sql: 'SELECT "select" FROM (SELECT 1 AS "select")', rows: [{ select: 1 }] },
  {
    name: 'aggregates over money in cents',
    sql: 'SELECT min(price_cents) >= 0 AS ok, max(price_cents) >= min(price_cents) AS ordered, round(avg(price_cents) / 100.0, 2) > 0 AS avg_ok FROM products',
    rows: [{ ok: 1, ordered: 1, avg_ok: 1 }],
  },
  {
    name: 'a derived table joined to a base table',
    sql: "SELECT c.id, t.n FROM customers c JOIN (SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id) t ON t.customer_id = c.id WHERE c.id = (SELECT customer_id FROM orders WHERE id = 'ord_0001')",
    rowCount: 1,
  },
]
