// Loads the configuration once per isolate. A missing or malformed setting
// answers every request with 500 and logs the setting's name: the Worker never
// runs with a silently defaulted security control.
import { createMiddleware } from 'hono/factory'
import { parseConfig, type ConfigResult } from '../config.ts'
import type { AppEnv } from '../env.ts'
import { AppError } from '../errors.ts'

const cache = new WeakMap<object, ConfigResult>()

export function configFor(env: object): ConfigResult {
  let result = cache.get(env)
  if (!result) {
    result = parseConfig(env as Record<string, unknown>)
    cache.set(env, result)
  }
  return result
}

export const loadConfig = () =>
  createMiddleware<AppEnv>(async function loadConfig(c, next) {
    const result = configFor(c.env)
    if (!result.ok) {
      c.var.log('error', 'config_invalid', { setting: result.setting, problem: result.problem })
      throw new AppError('config', { detail: `${result.setting}: ${result.problem}` })
    }
    c.set('config', result.config)
    await next()
  })
