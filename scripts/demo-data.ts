// Deterministic demo data for the local D1 and the tests.
// The same seed always yields the same rows, so tests can name ids and
// expected values. Every statement is `INSERT OR IGNORE`, so applying the
// data twice changes nothing (`npm run db:init` is idempotent).

export interface DemoDataOptions {
  customers?: number
  products?: number
  orders?: number
}

/** A small, fast, well-distributed PRNG (mulberry32); also used by tests for fixtures. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const FIRST = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Margaret', 'Niklaus', 'Radia', 'Tim', 'Sophie', 'Linus', 'Katherine', 'John', 'Hedy', 'Dennis', 'Annie', 'Bjarne']
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'Thompson', 'Hamilton', 'Wirth', 'Perlman', 'Berners-Lee', 'Wilson', 'Torvalds', 'Johnson', 'McCarthy', 'Lamarr', 'Ritchie', 'Easley', 'Stroustrup']
const COMPANY_A = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark', 'Wayne', 'Wonka', 'Cyberdyne', 'Tyrell', 'Soylent', 'Vandelay', 'Aperture', 'Massive', 'Oscorp']
const COMPANY_B = ['Corp', 'Industries', 'Labs', 'Systems', 'Holdings', 'Logistics', 'Foods', 'Dynamics']
const STREETS = ['Main St', 'Oak Ave', 'Pine Rd', 'Elm St', 'Maple Dr', 'Cedar Ln', 'Birch Way', 'Harbor Blvd']
const CITIES = ['Springfield', 'Rivertown', 'Lakeside', 'Hill Valley', 'Metropolis', 'Gotham', 'Smallville', 'Riverdale']
const TIERS = ['standard', 'standard', 'standard', 'gold', 'gold', 'platinum'] as const

const CATEGORIES: Record<string, { names: string[]; adjectives: string[]; base: number }> = {
  hardware: { names: ['Keyboard', 'Mouse', 'Monitor', 'Dock', 'Webcam', 'Headset', 'Router', 'SSD'], adjectives: ['Wireless', 'Ergonomic', 'Compact', 'Pro', 'Ultra'], base: 2900 },
  software: { names: ['Backup Suite', 'Password Vault', 'VPN Seat', 'Analytics License', 'IDE License'], adjectives: ['Team', 'Enterprise', 'Starter', 'Annual'], base: 4900 },
  office: { names: ['Desk Lamp', 'Notebook Pack', 'Whiteboard', 'Chair Mat', 'Label Printer'], adjectives: ['Classic', 'Eco', 'Deluxe', 'Mini'], base: 900 },
  networking: { names: ['Switch', 'Patch Cable', 'Access Point', 'Firewall Appliance'], adjectives: ['Managed', 'Gigabit', 'Rugged', 'PoE'], base: 3900 },
}

const STATUSES = ['pending', 'paid', 'shipped', 'delivered', 'cancelled'] as const
const NOTES = [null, null, null, 'gift wrap requested', 'deliver to loading dock', 'customer asked to expedite', 'address confirmed by phone', null]

/** SQL string literal with quotes doubled; the generator only emits its own values. */
function lit(v: string | number | null): string {
  if (v === null) return 'NULL'
  if (typeof v === 'number') return String(v)
  return `'${v.replace(/'/g, "''")}'`
}

const pad = (n: number, width: number) => String(n).padStart(width, '0')

function isoDay(base: number, offsetMinutes: number): string {
  return new Date(base + offsetMinutes * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

export interface DemoCounts {
  customers: number
  products: number
  orders: number
}

export const DEFAULT_COUNTS: DemoCounts = { customers: 60, products: 120, orders: 300 }

/** The demo data as single-line INSERT statements, in dependency order. */
export function demoDataStatements(opts: DemoDataOptions = {}): string[] {
  const counts = { ...DEFAULT_COUNTS, ...opts }
  const rand = prng(20261125)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T
  const epoch = Date.UTC(2026, 0, 5, 9, 0, 0)
  const out: string[] = []

  for (let i = 1; i <= counts.customers; i++) {
    const first = pick(FIRST)
    const last = pick(LAST)
    const company = `${pick(COMPANY_A)} ${pick(COMPANY_B)}`
    const id = `cus_${pad(i, 3)}`
    const email = `${first}.${last}.${i}@${company.split(' ')[0]!.toLowerCase()}.example`.toLowerCase()
    const phone = `+1555${pad(Math.floor(rand() * 10_000_000), 7)}`
    const address = `${1 + Math.floor(rand() * 999)} ${pick(STREETS)}, ${pick(CITIES)}`
    out.push(
      `INSERT OR IGNORE INTO customers (id, name, company, email, phone, address, tier, created_at) VALUES (${[id, `${first} ${last}`, company, email, phone, address, pick(TIERS), isoDay(epoch, i * 97)].map(lit).join(', ')});`,
    )
  }

  const prices: number[] = []
  const categories = Object.keys(CATEGORIES)
  for (let i = 1; i <= counts.products; i++) {
    const category = categories[(i - 1) % categories.length]!
    const spec = CATEGORIES[category]!
    const name = `${pick(spec.adjectives)} ${pick(spec.names)} ${Math.ceil(i / categories.length)}`
    const price = spec.base + Math.floor(rand() * 40) * 250
    prices.push(price)
    const sku = `${category.slice(0, 2).toUpperCase()}-${pad(i, 4)}`
    const description = `${name} for ${pick(['small teams', 'home offices', 'data centers', 'field staff', 'classrooms'])}; ${pick(['two-year warranty', 'next-day shipping', 'volume discounts', 'recyclable packaging'])}.`
    out.push(
      `INSERT OR IGNORE INTO products (id, sku, name, description, category, price_cents, stock, created_at) VALUES (${[`prd_${pad(i, 3)}`, sku, name, description, category, price, Math.floor(rand() * 500), isoDay(epoch, i * 13)].map(lit).join(', ')});`,
    )
  }

  for (let i = 1; i <= counts.orders; i++) {
    const customer = 1 + Math.floor(rand() * counts.customers)
    const product = 1 + Math.floor(rand() * counts.products)
    const quantity = 1 + Math.floor(rand() * 5)
    const status = pick(STATUSES)
    const created = isoDay(epoch, 60 * 24 + i * 311)
    out.push(
      `INSERT OR IGNORE INTO orders (id, customer_id, product_id, quantity, total_cents, status, note, created_at, updated_at) VALUES (${[`ord_${pad(i, 4)}`, `cus_${pad(customer, 3)}`, `prd_${pad(product, 3)}`, quantity, quantity * prices[product - 1]!, status, pick(NOTES), created, created].map(lit).join(', ')});`,
    )
  }
  return out
}
