import { readFileSync } from 'node:fs'
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-pool-workers'
import { exportJWK, generateKeyPair } from 'jose'
import { unstable_splitSqlQuery } from 'wrangler'
import { defineConfig } from 'vitest/config'
import { demoDataStatements } from './scripts/demo-data.ts'

// Test-only signing keys, made fresh for every run: the Worker under test
// trusts the public half (AUTH_JWKS), tests sign with the private half.
const rsa = await generateKeyPair('RS256', { extractable: true })
const ec = await generateKeyPair('ES256', { extractable: true })
const rsaPublic = { ...(await exportJWK(rsa.publicKey)), kid: 'test-rs256', alg: 'RS256', use: 'sig' }
const ecPublic = { ...(await exportJWK(ec.publicKey)), kid: 'test-es256', alg: 'ES256', use: 'sig' }
const rsaPrivate = { ...(await exportJWK(rsa.privateKey)), kid: 'test-rs256', alg: 'RS256' }
const ecPrivate = { ...(await exportJWK(ec.privateKey)), kid: 'test-es256', alg: 'ES256' }

const CONFORMANCE_2026 = 'test/e2e/conformance-2026.test.ts'

export const TEST_ISSUER = 'https://issuer.test'
export const TEST_AUDIENCE = 'https://bastion.test/mcp'

// migrations/, as wrangler reads them: applied to the test D1 by test/support/apply-schema.ts
const migrations = await readD1Migrations(new URL('./migrations', import.meta.url).pathname)
// README "Add your own tool in five minutes": its migration, applied by test/integration/declared-tools.test.ts
const shipments = unstable_splitSqlQuery(readFileSync(new URL('./test/fixtures/shipments/0002_shipments.sql', import.meta.url), 'utf8'))

export default defineConfig({
  test: {
    // CI also writes a JSON report, from which .ci/run prints the closing count.
    reporters: process.env['CI'] ? ['default', ['json', { outputFile: '.tmp/vitest-report.json' }]] : ['default'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['./test/support/redis-global-setup.ts'],
        },
      },
      {
        plugins: [
          cloudflareTest({
            main: './src/index.ts',
            wrangler: { configPath: './wrangler.toml' },
            miniflare: {
              // A second database for the row-scope differential test (test/integration/row-scope-differential.test.ts).
              d1Databases: { TENANT_DB: 'tenant-db' },
              bindings: {
                AUTH_ISSUER: TEST_ISSUER,
                AUTH_AUDIENCE: TEST_AUDIENCE,
                AUTH_JWKS: JSON.stringify({ keys: [rsaPublic, ecPublic] }),
                ALLOWED_ORIGINS: 'https://allowed.example',
                CONFIRM_STATE_KEY: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url'),
                TEST_PRIVATE_JWKS: JSON.stringify({ keys: [rsaPrivate, ecPrivate] }),
                TEST_MIGRATIONS: migrations,
                TEST_DEMO_DATA: demoDataStatements(),
                TEST_SHIPMENTS_MIGRATION: shipments,
              },
            },
          }),
        ],
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // A loaded 2-core machine can take more than vitest's 5 s default for one
          // whole-Worker call; this bounds a hang, it is not a speed assertion.
          testTimeout: 30_000,
          setupFiles: ['./test/support/apply-schema.ts'],
          // redis-server + the Upstash REST proxy, for the limiter contract suite.
          globalSetup: ['./test/support/redis-global-setup.ts'],
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          // npm run test:conformance-2026 (README "Conformance"): it installs Node 22 and the suite first
          exclude: [CONFORMANCE_2026],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      ...(process.env['CONFORMANCE_2026'] === undefined
        ? []
        : [{ test: { name: 'conformance-2026', include: [CONFORMANCE_2026], environment: 'node' as const, testTimeout: 120_000, hookTimeout: 420_000 } }]),
    ],
  },
})
