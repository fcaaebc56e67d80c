// CPU accounting for the benchmarks: the workerd processes this Node
// process started (its descendants), and their utime + stime from /proc.
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100)

/** Every descendant process of ours whose name is workerd. */
export function workerdPids(): number[] {
  return descendantPids(process.pid, 'workerd')
}

/** Every descendant of `root` (and `root` itself), or only those named `name`. */
export function descendantPids(root: number, name?: string): number[] {
  const parents = new Map<number, number>()
  const names = new Map<number, string>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const close = stat.lastIndexOf(')')
      names.set(Number(entry), stat.slice(stat.indexOf('(') + 1, close))
      parents.set(Number(entry), Number(stat.slice(close + 2).split(' ')[1]))
    } catch {
      // gone
    }
  }
  const mine = (pid: number): boolean => {
    if (pid === root) return true
    for (let p = parents.get(pid); p !== undefined && p > 1; p = parents.get(p)) if (p === root) return true
    return false
  }
  return [...names].filter(([pid, n]) => (name === undefined || n === name) && mine(pid)).map(([pid]) => pid)
}

/** utime + stime of the given processes, in ms. */
export function cpuMs(pids: number[]): number {
  let ticks = 0
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // gone
    }
  }
  return (ticks * 1000) / CLK_TCK
}

