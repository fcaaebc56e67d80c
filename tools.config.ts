// The declared tools: each one SQL statement with named parameters (:name),
// its inputs, scope and limits, and no code. Checked when the Worker loads and
// by `npm run check:tools` (README "Add your own tool in five minutes").
// Parameters bound with `from: 'claim.<name>'` come from the caller's token,
// never from the model; row scope (ROW_SCOPE) applies to every statement here.
import { declareTools } from './src/tools/declared.ts'

export default declareTools({
  get_customer: {
    title: 'Get customer',
    description: 'Retrieve one customer record (name, company, contact details, tier) by its id.',
    scope: 'customers:read',
    access: 'read',
    parameters: {
      customerId: { type: 'string', pattern: '^cus_[A-Za-z0-9]+$', minLength: 1, maxLength: 64, description: 'customer id, e.g. "cus_001"' },
    },
    sql: `SELECT id, name, company, email, phone, address, tier, created_at
          FROM customers WHERE id = :customerId`,
    result: { row: 'customer', notFound: 'customer :customerId not found' },
    columns: { id: 'text', name: 'text', company: 'text', email: 'text', phone: 'text', address: 'text', tier: 'text', created_at: 'text' },
  },

  search_products: {
    title: 'Search products',
    description: 'Find products whose name, SKU, category or description contains the given text (case-insensitive).',
    scope: 'products:read',
    access: 'read',
    parameters: {
      query: { type: 'string', trim: true, minLength: 1, maxLength: 200, description: 'text to look for, e.g. "keyboard" or "HA-0001"' },
      limit: { type: 'integer', minimum: 1, maximum: 50, default: 10, description: 'maximum number of products, 1..50 (default 10)' },
    },
    // instr(lower(...)): a case-insensitive "contains" in which % and _ are plain characters
    sql: `SELECT id, sku, name, description, category, price_cents, stock
          FROM products
          WHERE instr(lower(name), lower(:query)) > 0 OR instr(lower(sku), lower(:query)) > 0
             OR instr(lower(description), lower(:query)) > 0 OR instr(lower(category), lower(:query)) > 0
          ORDER BY instr(lower(name), lower(:query)) > 0 DESC, name ASC, id ASC
          LIMIT :limit`,
    result: { rows: 'products', maxRows: 50 },
    columns: { id: 'text', sku: 'text', name: 'text', description: 'text', category: 'text', price_cents: 'integer', stock: 'integer' },
  },
})
