// The cron (wrangler.toml [triggers]): audit retention, the alert tail, and
// fresh table statistics for execute_query's work budget (src/sql/plan-budget.ts
// reads sqlite_stat1; `PRAGMA optimize=0x10002` re-analyzes what changed,
// under SQLite's own analysis limit, so it stays cheap on big tables).
// In every chain, rows older than AUDIT_RETENTION_DAYS are deleted oldest
// first, and the last deleted row's seq and hash become the checkpoint the
// chain verifies from. A chain that does not verify is never pruned: the
// evidence stays, the failure is logged and alerted, and the other chains
// are still pruned.
import { AuditChainError, listChains, pruneAudit } from './audit/store.ts'
import { flushAlerts } from './audit/writer.ts'
import { createLogger } from './log.ts'
import { configFor } from './middleware/config.ts'

export async function scheduled(controller: ScheduledController, env: Env, ctx: ExecutionContext): Promise<void> {
  const log = createLogger({ component: 'cron', cron: controller.cron })
  const result = configFor(env)
  if (!result.ok) {
    log('error', 'config_invalid', { setting: result.setting, problem: result.problem })
    return
  }
  const { config } = result
  const cutoff = new Date(controller.scheduledTime - config.auditRetentionDays * 86_400_000)
  let chains: number[] = []
  try {
    chains = await listChains(env.DB)
  } catch (error) {
    log('error', 'audit_prune_failed', { error: error instanceof Error ? error.message : String(error) })
  }
  for (const chain of chains) {
    try {
      const pruned = await pruneAudit(env.DB, cutoff, { chain })
      log('info', 'audit_pruned', { chain, cutoff: cutoff.toISOString(), deleted: pruned.deleted, checkpoint: pruned.checkpoint })
    } catch (error) {
      const broken = error instanceof AuditChainError
      log('error', broken ? 'audit_chain_broken' : 'audit_prune_failed', { chain, error: error instanceof Error ? error.message : String(error) })
    }
  }
  try {
    await env.DB.prepare('PRAGMA optimize=0x10002').run()
    log('info', 'sql_stats_refreshed', {})
  } catch (error) {
    log('error', 'sql_stats_refresh_failed', { error: error instanceof Error ? error.message : String(error) })
  }
  ctx.waitUntil(Promise.all(flushAlerts(config, log)))
}
