// What `wrangler deploy` uploads: the bundle of wrangler.toml's `main`
// (src/index.ts), built with `wrangler deploy --dry-run`, must not contain the
// conformance suite's fixtures (src/conformance/, development only). The
// development entry's bundle is built the same way and must contain them, so
// the check is known to see fixtures when they are there.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ROOT, WRANGLER } from '../../scripts/lib/dev-env.ts'

const FIXTURE_MARKERS = ['test_missing_capability', 'test_streaming_elicitation', 'test_logging_tool', 'test_simple_prompt', 'test_simple_text', 'test://static-text', 'Conformance fixture']
const dirs: string[] = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/** The modules `wrangler deploy --dry-run` writes for `entry` (wrangler.toml's main when undefined), as one text. */
function bundled(entry?: string): string {
  const out = mkdtempSync(join(tmpdir(), 'bastion-bundle-'))
  dirs.push(out)
  const r = spawnSync(WRANGLER, ['deploy', ...(entry ? [entry] : []), '--dry-run', '--outdir', out], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
  })
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0)
  const modules = readdirSync(out).filter((f) => f.endsWith('.js'))
  expect(modules.length).toBeGreaterThan(0)
  return modules.map((f) => readFileSync(join(out, f), 'utf8')).join('\n')
}

describe('the deployed bundle', () => {
  it('holds none of the conformance fixtures', () => {
    const deployed = bundled()
    for (const marker of FIXTURE_MARKERS) expect(deployed, marker).not.toContain(marker)
    expect(deployed).toContain('bastion://schema')
  })

  it('the development entry (npm run dev -- --conformance) holds them all', () => {
    const development = bundled('src/conformance/entry.ts')
    for (const marker of FIXTURE_MARKERS) expect(development, marker).toContain(marker)
  })
})
