// Row scope (src/policy/row-scope.ts) and the SQL guard's rewrite of scoped
// table references (src/sql/guard.ts): every way SQLite reads a table is
// rewritten to the filtered subquery; nothing else changes. What the rewrite
// returns against real data is tested in test/integration/row-scope.test.ts.
import { describe, expect, it } from 'vitest'
import { parseRowScope, rowFilterFor, scopeValues } from '../../src/policy/row-scope.ts'
import { guardQuery, guardWrite, type GuardOptions } from '../../src/sql/guard.ts'

const ROLES = new Set(['read-only', 'editor', 'admin'])
const SCOPE = new Map([['orders', 'tenant_id'], ['customers', 'account_manager']])
const opts: GuardOptions = { allowedTables: ['customers', 'orders', 'products', 'tickets'], maxRows: 10, rowScope: SCOPE }
const O = '(SELECT * FROM main.orders WHERE "tenant_id" = ?1)'

function rewritten(query: string, options = opts) {
  const result = guardQuery(query, options)
  if (!result.ok) throw new Error(`refused: ${result.code}: ${result.message}`)
  return result
}

describe('the guard reads every scoped table through its filter', () => {
  it.each([
    ['FROM t', 'SELECT id FROM orders', `SELECT id FROM ${O} AS orders`],
    ['FROM t AS a', 'SELECT o.id FROM orders AS o', `SELECT o.id FROM ${O} AS o`],
    ['FROM t a', 'SELECT o.id FROM orders o', `SELECT o.id FROM ${O} o`],
    ['FROM main.t', 'SELECT id FROM main.orders', `SELECT id FROM ${O} AS orders`],
    ['FROM "T" (quoted, other case)', 'SELECT id FROM "ORDERS"', `SELECT id FROM ${O} AS "ORDERS"`],
    ['JOIN', 'SELECT 1 FROM products p JOIN orders o ON o.product_id = p.id', `SELECT 1 FROM products p JOIN ${O} o ON o.product_id = p.id`],
    ['x IN t', 'SELECT 1 WHERE 1 IN orders', `SELECT 1 WHERE 1 IN ${O}`],
    ["x IN 't' (a string is a table there)", "SELECT 1 WHERE 1 IN 'orders'", `SELECT 1 WHERE 1 IN ${O}`],
    ['x IN main.t', 'SELECT 1 WHERE 1 IN main.orders', `SELECT 1 WHERE 1 IN ${O}`],
    ['a scalar subquery', 'SELECT (SELECT count(*) FROM orders) AS n', `SELECT (SELECT count(*) FROM ${O} AS orders) AS n`],
    ['EXISTS', 'SELECT 1 WHERE EXISTS (SELECT 1 FROM orders)', `SELECT 1 WHERE EXISTS (SELECT 1 FROM ${O} AS orders)`],
    ['a CTE body', 'WITH x AS (SELECT * FROM orders) SELECT * FROM x', `WITH x AS (SELECT * FROM ${O} AS orders) SELECT * FROM x`],
    ['both members of a UNION', 'SELECT id FROM orders UNION SELECT id FROM orders', `SELECT id FROM ${O} AS orders UNION SELECT id FROM ${O} AS orders`],
    ['a subquery in FROM', 'SELECT * FROM (SELECT id FROM orders) s', `SELECT * FROM (SELECT id FROM ${O} AS orders) s`],
  ])('%s', (_, query, statement) => {
    const result = rewritten(query)
    expect(result.statement).toBe(statement)
    expect(result.scoped).toEqual(['orders'])
    expect(result.sql).toBe(`SELECT * FROM (\n${statement}\n) LIMIT 11`)
  })

  it('gives each scoped table one parameter, numbered in order of first use', () => {
    const result = rewritten('SELECT c.id FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id IN (SELECT customer_id FROM orders)')
    expect(result.scoped).toEqual(['customers', 'orders'])
    expect(result.statement).toBe(
      'SELECT c.id FROM (SELECT * FROM main.customers WHERE "account_manager" = ?1) c JOIN (SELECT * FROM main.orders WHERE "tenant_id" = ?2) o ON o.customer_id = c.id ' +
        'WHERE c.id IN (SELECT customer_id FROM (SELECT * FROM main.orders WHERE "tenant_id" = ?2) AS orders)',
    )
  })

  it('numbers the scope parameters after the named parameters of a declared statement', () => {
    const result = rewritten('SELECT id FROM orders WHERE status = :status AND id > :after', { ...opts, allowedTables: 'any', parameters: 'named' })
    expect(result.parameters).toEqual(['status', 'after'])
    expect(result.statement).toBe('SELECT id FROM (SELECT * FROM main.orders WHERE "tenant_id" = ?3) AS orders WHERE status = ?1 AND id > ?2')
  })

  it('leaves a CTE named like a scoped table alone, and scopes the table its body reads', () => {
    const result = rewritten('WITH orders AS (SELECT * FROM main.orders WHERE 1) SELECT * FROM orders')
    expect(result.statement).toBe(`WITH orders AS (SELECT * FROM ${O} AS orders WHERE 1) SELECT * FROM orders`)
  })

  it('leaves tables without a rule and queries without scoped tables unchanged', () => {
    expect(rewritten('SELECT id FROM products').statement).toBe('SELECT id FROM products')
    expect(rewritten('SELECT id FROM products').scoped).toEqual([])
  })

  it('refuses INDEXED BY and NOT INDEXED on a scoped table (a subquery cannot carry them)', () => {
    for (const query of ['SELECT * FROM orders INDEXED BY orders_by_status', 'SELECT * FROM orders NOT INDEXED']) {
      expect(guardQuery(query, opts)).toMatchObject({ ok: false, code: 'unsupported_syntax' })
    }
    expect(guardQuery('SELECT * FROM products NOT INDEXED', opts)).toMatchObject({ ok: true })
  })

  it('still refuses parameters in execute_query, scoped or not', () => {
    expect(guardQuery('SELECT * FROM orders WHERE id = :id', opts)).toMatchObject({ ok: false, code: 'parameter_not_allowed' })
    expect(guardQuery('SELECT * FROM orders WHERE id = ?1', { ...opts, parameters: 'named' })).toMatchObject({ ok: false, code: 'parameter_not_allowed' })
  })
})

describe('declared writes (guardWrite)', () => {
  it('adds the scope to the WHERE of an UPDATE and a DELETE, or adds a WHERE', () => {
    expect(guardWrite("UPDATE orders SET note = :note WHERE id = :id OR id = 'x'", SCOPE)).toMatchObject({
      ok: true,
      statement: `UPDATE orders SET note = ?1 WHERE (id = ?2 OR id = 'x') AND "tenant_id" = ?3`,
      parameters: ['note', 'id'],
      scoped: ['orders'],
    })
    expect(guardWrite('DELETE FROM orders WHERE id = :id', SCOPE)).toMatchObject({ ok: true, statement: 'DELETE FROM orders WHERE (id = ?1) AND "tenant_id" = ?2' })
    expect(guardWrite("UPDATE orders SET note = 'x'", SCOPE)).toMatchObject({ ok: true, statement: `UPDATE orders SET note = 'x' WHERE "tenant_id" = ?1` })
  })

  it("appends the scoped column and the caller's value to an INSERT, and refuses one that sets it itself", () => {
    expect(guardWrite('INSERT INTO orders (id, note) VALUES (:id, :note)', SCOPE)).toMatchObject({
      ok: true,
      statement: 'INSERT INTO orders (id, note, "tenant_id") VALUES (?1, ?2, ?3)',
    })
    expect(guardWrite('INSERT INTO orders (id, tenant_id) VALUES (:id, :tenant)', SCOPE)).toMatchObject({ ok: false, code: 'unsupported_syntax' })
  })

  it.each([
    ['a SELECT', 'SELECT 1', 'not_write'],
    ['two statements', 'DELETE FROM orders WHERE id = :a; DELETE FROM orders', 'multiple_statements'],
    ['a subquery', 'DELETE FROM orders WHERE id IN (SELECT id FROM orders)', 'unsupported_syntax'],
    ['a protected table', 'DELETE FROM audit_log', 'table_not_allowed'],
    ['a function off the list', 'UPDATE orders SET note = randomblob(9)', 'function_not_allowed'],
    ['RETURNING', 'DELETE FROM orders WHERE id = :id RETURNING *', 'unsupported_syntax'],
    ['INSERT ... SELECT', 'INSERT INTO orders (id) SELECT id FROM orders', 'unsupported_syntax'],
    ['two rows', "INSERT INTO tickets (id) VALUES ('a'), ('b')", 'unsupported_syntax'],
    ['OR REPLACE', "INSERT OR REPLACE INTO tickets (id) VALUES ('a')", 'unsupported_syntax'],
    ['REPLACE INTO', "REPLACE INTO tickets (id) VALUES ('a')", 'unsupported_syntax'],
    ['UPDATE OR IGNORE', 'UPDATE OR IGNORE orders SET note = 1', 'unsupported_syntax'],
    ['ON CONFLICT', "INSERT INTO tickets (id) VALUES ('a') ON CONFLICT DO NOTHING", 'unsupported_syntax'],
    ['UPDATE ... FROM', 'UPDATE orders SET note = 1 FROM products', 'unsupported_syntax'],
  ])('refuses %s', (_, sql, code) => {
    expect(guardWrite(sql, SCOPE)).toMatchObject({ ok: false, code })
  })
})

describe('ROW_SCOPE and ROW_SCOPE_EXEMPT_ROLES', () => {
  it('parses one rule per table, and the exempt roles', () => {
    const scope = parseRowScope('orders.tenant_id=claim.tenant, Customers.account_manager = claim.sub', 'admin', ROLES)
    expect([...scope.rules.values()]).toEqual([
      { table: 'orders', column: 'tenant_id', claim: 'tenant' },
      { table: 'customers', column: 'account_manager', claim: 'sub' },
    ])
    expect([...scope.exemptRoles]).toEqual(['admin'])
  })

  it.each([
    ['a rule without claim.', 'orders.tenant_id=tenant', undefined, /not table\.column=claim/],
    ['a protected table', 'audit_log.sub=claim.sub', undefined, /not a business table/],
    ['two rules for one table', 'orders.a=claim.x,orders.b=claim.y', undefined, /more than one rule/],
    ['a role the policy does not know', 'orders.a=claim.x', 'root', /not a role of the policy/],
    ['exempt roles without a rule', undefined, 'admin', /no rule/],
  ])('refuses %s', (_, rules, exempt, message) => {
    expect(() => parseRowScope(rules, exempt, ROLES)).toThrow(message)
  })

  it("binds each rule to the caller's claim; sub is the principal's subject; an exempt role reads everything", () => {
    const scope = parseRowScope('orders.tenant_id=claim.tenant,customers.account_manager=claim.sub', 'admin', ROLES)
    const filter = rowFilterFor(scope, { sub: 'alice', roles: ['editor'], claims: new Map([['tenant', 'acme']]) })
    expect(scopeValues(filter, ['customers', 'orders'])).toEqual({ ok: true, values: ['alice', 'acme'] })
    expect(rowFilterFor(scope, { sub: 'root', roles: ['editor', 'admin'], claims: new Map() }).size).toBe(0)
  })

  it('reports the table and claim a token lacks', () => {
    const scope = parseRowScope('orders.tenant_id=claim.tenant', undefined, ROLES)
    const filter = rowFilterFor(scope, { sub: 'bob', roles: [], claims: new Map() })
    expect(scopeValues(filter, ['orders'])).toEqual({ ok: false, table: 'orders', claim: 'tenant' })
  })
})
