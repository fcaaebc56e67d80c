// Every SQL statement the business tools run, in one place, with numbered
// bound parameters (?1, ?2 ...) and never string-built values. Tools get a
// `DataAccess` built over one D1 binding; they never see the binding itself.
//
// Row scope (policy/row-scope.ts): every statement here that reads a scoped
// table reads it through `scopedSource` (`from` below), and the UPDATE and
// INSERT of a scoped table carry the caller's value, so the hand-written
// tools see exactly the rows execute_query and the declared tools see.
//
// Writes are not executed here: they are returned as statements given as data
// ({ sql, params }) and committed through the `Commit` function the caller
// supplies, so the audit layer can hand them to the chain's sequencer, which
// runs a mutation and its audit row in one D1 batch (one transaction).
import { scopedSource, scopedUse, type RowFilter } from '../policy/row-scope.ts'
import { executeReadOnly, type ExecuteOptions, type ExecuteResult } from '../sql/execute.ts'
import { claimMissing, notFound } from '../tools/define.ts'
import type { OrderStatus } from './order-status.ts'

export interface Customer {
  id: string
  name: string
  company: string
  email: string
  phone: string
  address: string
  tier: string
  created_at: string
}

export interface Order {
  id: string
  customer_id: string
  product_id: string
  quantity: number
  total_cents: number
  status: OrderStatus
  note: string | null
  created_at: string
  updated_at: string
}

export interface Product {
  id: string
  sku: string
  name: string
  description: string
  category: string
  price_cents: number
  stock: number
}

export interface Ticket {
  id: string
  customer_id: string
  subject: string
  body: string
  priority: 'low' | 'normal' | 'high' | 'urgent'
  status: 'open' | 'closed'
  created_by: string
  created_at: string
}

export interface SearchHit {
  kind: 'customer' | 'order' | 'product'
  id: string
  title: string
  snippet: string
  score: number
}

/** Keyset position for list_orders: the last row of the previous page. */
export interface OrderCursor {
  createdAt: string
  id: string
}

/**
 * Commits write statements atomically (one D1 batch), only if the LAST
 * statement changed a row; resolves false (nothing applied) otherwise.
 * `output` is what the tool will return, so the auditing commit can record
 * its digest in the audit row that shares the batch.
 */
export type Commit = (statements: SqlStatement[], output: unknown) => Promise<boolean>

/** A value D1 binds to a numbered parameter (?1, ?2 ...). */
export type SqlValue = string | number | null

/**
 * One write statement as plain data, so it can cross the RPC boundary to the
 * audit sequencer (a D1PreparedStatement cannot).
 */
export interface SqlStatement {
  sql: string
  params: SqlValue[]
}

const ORDER_COLUMNS = 'id, customer_id, product_id, quantity, total_cents, status, note, created_at, updated_at'

/**
 * Turns free text into a safe FTS5 query: each word becomes a quoted prefix
 * term ("word"*), so FTS5 operators in user input (NEAR, OR, column filters,
 * parentheses) have no effect. Returns undefined when no word is left.
 */
export function ftsQuery(text: string): string | undefined {
  const words = text.normalize('NFKC').match(/[\p{L}\p{N}]+/gu)?.slice(0, 16)
  if (!words || words.length === 0) return undefined
  return words.map((w) => `"${w}"*`).join(' ')
}

/** The search index's document kinds and the tables their `ref_id` names. */
const SEARCH_KINDS = [['customer', 'customers'], ['order', 'orders'], ['product', 'products']] as const

export function createDataAccess(db: D1Database, commit: Commit, sql: ExecuteOptions, filter: RowFilter = new Map()) {
  /** `table`'s row-scope column and the caller's value, undefined when unscoped; refuses a token without the claim. */
  const scopeOf = (table: string): { column: string; value: string | number } | undefined => {
    const scope = filter.get(table)
    if (!scope) return undefined
    if (scope.value === undefined) throw claimMissing(scope.claim, scopedUse(table))
    return { column: scope.column, value: scope.value }
  }
  /** `table` as this caller may read it: itself, or its filtered subquery (its value appended to `params`). */
  const from = (table: string, params: SqlValue[]): string => {
    const scope = scopeOf(table)
    if (!scope) return table
    params.push(scope.value)
    return `${scopedSource(table, scope.column, params.length)} AS ${table}`
  }
  /** ` AND "<column>" = ?N` for an UPDATE of a scoped table, else ''. */
  const scopedWhere = (table: string, params: SqlValue[]): string => {
    const scope = scopeOf(table)
    if (!scope) return ''
    params.push(scope.value)
    return ` AND "${scope.column}" = ?${params.length}`
  }
  /** The search index documents this caller may see: those whose row it can read. */
  const visibleDocuments = (params: SqlValue[]): string => {
    if (!SEARCH_KINDS.some(([, table]) => filter.has(table))) return ''
    const kinds = SEARCH_KINDS.map(([kind, table]) => (filter.has(table) ? `(kind = '${kind}' AND ref_id IN (SELECT id FROM ${from(table, params)}))` : `kind = '${kind}'`))
    return ` AND (${kinds.join(' OR ')})`
  }

  return {
    /** The caller's row filter, for the declared tools (src/tools/declared.ts). */
    rowFilter: filter,

    /** A declared read: its compiled statement and bound values; all rows. */
    async select(statement: string, params: readonly SqlValue[]): Promise<Record<string, unknown>[]> {
      return (await db.prepare(statement).bind(...params).all<Record<string, unknown>>()).results
    },

    /** A declared read of one row: the first, or null. */
    selectFirst(statement: string, params: readonly SqlValue[]): Promise<Record<string, unknown> | null> {
      return db.prepare(statement).bind(...params).first<Record<string, unknown>>()
    },

    /** A declared write, committed with the call's audit row; false when it changed no row (nothing applied). */
    write(statement: string, params: SqlValue[], output: unknown): Promise<boolean> {
      return commit([{ sql: statement, params }], output)
    },

    /**
     * execute_query: parsed, allow-listed, row- and byte-capped (src/sql/).
     * Runs in an unconstrained D1 session, so with read replication enabled
     * ad-hoc SQL is served by replicas and stays off the primary that takes
     * the mutations and the audit log.
     */
    readOnlyQuery(query: string): Promise<ExecuteResult> {
      return executeReadOnly(typeof db.withSession === 'function' ? db.withSession('first-unconstrained') : db, query, { ...sql, rowFilter: filter })
    },

    async customerExists(id: string): Promise<boolean> {
      const params: SqlValue[] = [id]
      return (await db.prepare(`SELECT 1 AS one FROM ${from('customers', params)} WHERE id = ?1`).bind(...params).first()) !== null
    },

    async getOrder(id: string): Promise<Order | null> {
      const params: SqlValue[] = [id]
      return db.prepare(`SELECT ${ORDER_COLUMNS} FROM ${from('orders', params)} WHERE id = ?1`).bind(...params).first<Order>()
    },

    /** Newest first; fetches one extra row to know whether a next page exists. */
    async listOrders(filter: { customerId?: string | undefined; status?: OrderStatus | undefined; limit: number; after?: OrderCursor | undefined }): Promise<{ orders: Order[]; next: OrderCursor | undefined }> {
      const params: SqlValue[] = [filter.customerId ?? null, filter.status ?? null, filter.after?.createdAt ?? null, filter.after?.id ?? null, filter.limit + 1]
      const { results } = await db
        .prepare(
          `SELECT ${ORDER_COLUMNS} FROM ${from('orders', params)}
           WHERE (?1 IS NULL OR customer_id = ?1)
             AND (?2 IS NULL OR status = ?2)
             AND (?3 IS NULL OR created_at < ?3 OR (created_at = ?3 AND id < ?4))
           ORDER BY created_at DESC, id DESC
           LIMIT ?5`,
        )
        .bind(...params)
        .all<Order>()
      const orders = results.slice(0, filter.limit)
      const last = orders.at(-1)
      return { orders, next: results.length > filter.limit && last ? { createdAt: last.created_at, id: last.id } : undefined }
    },

    /** Ranked full-text search (bm25, title weighted over body). */
    async search(match: string, limit: number): Promise<SearchHit[]> {
      const params: SqlValue[] = [match, limit]
      const { results } = await db
        .prepare(
          `SELECT kind, ref_id AS id, title,
                  snippet(search_index, 3, '[', ']', '…', 12) AS snippet,
                  bm25(search_index, 0, 0, 4.0, 1.0) AS score
           FROM search_index WHERE search_index MATCH ?1${visibleDocuments(params)}
           ORDER BY score ASC, kind ASC, ref_id ASC
           LIMIT ?2`,
        )
        .bind(...params)
        .all<SearchHit>()
      // bm25 is lower-is-better and negative; expose higher-is-better.
      return results.map((r) => ({ ...r, score: Math.round(-r.score * 1000) / 1000 }))
    },

    /**
     * Moves an order from `from` to `to`, only if it is still in `from`
     * (optimistic concurrency). Returns false when another writer got there first.
     */
    async updateOrderStatus(update: { id: string; from: OrderStatus; to: OrderStatus; note: string | null; at: string }, output: unknown): Promise<boolean> {
      // Applied only if the row was still in `from` (SQLite's changes() of the
      // UPDATE itself; D1's meta.changes would also count the FTS trigger's writes).
      const params: SqlValue[] = [update.to, update.note, update.at, update.id, update.from]
      return commit([{ sql: `UPDATE orders SET status = ?1, note = coalesce(?2, note), updated_at = ?3 WHERE id = ?4 AND status = ?5${scopedWhere('orders', params)}`, params }], output)
    },

    async createTicket(ticket: Ticket, output: unknown): Promise<void> {
      const columns = ['id', 'customer_id', 'subject', 'body', 'priority', 'status', 'created_by', 'created_at']
      const params: SqlValue[] = [ticket.id, ticket.customer_id, ticket.subject, ticket.body, ticket.priority, ticket.status, ticket.created_by, ticket.created_at]
      // a scoped tickets table: the new row carries the caller's value (or must already: customer_id)
      const scope = scopeOf('tickets')
      if (scope) {
        const at = columns.indexOf(scope.column)
        if (at === -1) {
          columns.push(scope.column)
          params.push(scope.value)
        } else if (params[at] !== scope.value) {
          // the caller cannot read that customer's tickets, so for it the customer does not exist
          throw notFound('customer', ticket.customer_id)
        }
      }
      const applied = await commit([{ sql: `INSERT INTO tickets (${columns.join(', ')}) VALUES (${params.map((_, i) => `?${i + 1}`).join(', ')})`, params }], output)
      if (!applied) throw new Error('create_ticket: insert changed no row')
    },
  }
}

export type DataAccess = ReturnType<typeof createDataAccess>
