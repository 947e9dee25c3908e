/** What a benchmark reports, and how it is printed: a table for people, JSON for machines. */
import type { Stat, Summary } from './stats.js'

/** The same measure taken of the reference a figure is compared with, in the same run. */
export interface Baseline {
  /** e.g. `runc run --detach (busybox bundle)`. */
  what: string
  summary: Summary
}

/** A target a figure should stay under. */
export interface Goal {
  stat: Stat
  atMost: number
}

/** One measured quantity of Sandstorm, beside its baseline. */
export interface Figure {
  /** e.g. `Sandbox.create('debian') until it resolves`. */
  what: string
  unit: 'ms' | 'MiB'
  subject: Summary
  /** null when no baseline could be measured (the reason is in the benchmark's notes). */
  baseline: Baseline | null
  goal?: Goal
}

/** What one benchmark found. */
export interface BenchResult {
  name: string
  title: string
  figures: Figure[]
  /** Which baseline was used and why, what was skipped, what the numbers mean. */
  notes: string[]
}

/** The host the numbers were taken on. */
export interface MachineInfo {
  cpus: number
  cpuModel: string
  memoryMiB: number
  kernel: string
  runc: string
  node: string
  /** Load average over the last minute at the start: other work on the host skews every figure. */
  loadAvg1m: number
}

const stats: Stat[] = ['p50', 'p95', 'p99']
const columns = ['n', 'min', 'p50', 'p95', 'p99', 'max', 'mean'] as const

/** Sandstorm's figure over the baseline's, per percentile. */
export function ratios(figure: Figure): Record<Stat, number> | null {
  const b = figure.baseline?.summary
  if (!b) return null
  const r = (s: Stat) => (b[s] > 0 ? figure.subject[s] / b[s] : Number.POSITIVE_INFINITY)
  return { p50: r('p50'), p95: r('p95'), p99: r('p99'), mean: r('mean') }
}

/** Whether the figure meets its goal (null when it has none). */
export function goalMet(figure: Figure): boolean | null {
  return figure.goal ? figure.subject[figure.goal.stat] <= figure.goal.atMost : null
}

function fmt(value: number): string {
  if (!Number.isFinite(value)) return '-'
  return Math.abs(value) >= 100 ? value.toFixed(1) : value.toFixed(2)
}

function summaryCells(s: Summary): string[] {
  return [String(s.n), fmt(s.min), fmt(s.p50), fmt(s.p95), fmt(s.p99), fmt(s.max), fmt(s.mean)]
}

/** Lays rows out in columns: the first left-aligned, the rest right-aligned. */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r) =>
    r
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd(),
  )
}

/** The machine, as the header of a report. */
export function formatMachine(m: MachineInfo): string {
  return [
    `machine: ${m.cpus} cpus (${m.cpuModel}), ${m.memoryMiB} MiB`,
    `kernel:  ${m.kernel}`,
    `runc:    ${m.runc}`,
    `node:    ${m.node}`,
    `load:    ${m.loadAvg1m.toFixed(2)} (1-minute average at start; other work on the host skews every figure)`,
  ].join('\n')
}

/** One benchmark as a readable table: each figure, its baseline and the ratio, then its goal. */
export function formatResult(result: BenchResult): string {
  const rows: string[][] = [['', ...columns, 'unit']]
  const goals: string[] = []
  let previous: Baseline | null = null
  for (const f of result.figures) {
    rows.push([f.what, ...summaryCells(f.subject), f.unit])
    if (f.baseline) {
      // Figures that share one baseline (the same samples) show it once, under the first of them.
      if (f.baseline !== previous) rows.push([`  baseline: ${f.baseline.what}`, ...summaryCells(f.baseline.summary), f.unit])
      previous = f.baseline
      const r = ratios(f)!
      rows.push(['  ratio sandstorm / baseline', '', '', ...stats.map((s) => `${fmt(r[s])}x`), '', `${fmt(r.mean)}x`, ''])
    } else {
      rows.push(['  baseline: none', '', '', '', '', '', '', '', ''])
    }
    if (f.goal) {
      const value = f.subject[f.goal.stat]
      const met = goalMet(f) ? 'met' : 'MISSED'
      goals.push(`goal ${f.goal.stat} <= ${f.goal.atMost} ${f.unit} for "${f.what}": ${fmt(value)} ${f.unit}, ${met}`)
    }
  }
  return [`== ${result.name}: ${result.title}`, ...table(rows), ...goals, ...result.notes.map((n) => `note: ${n}`)].join('\n')
}

/** The whole run as JSON, with ratios and goal outcomes worked out. */
export function toJson(machine: MachineInfo, results: BenchResult[], failures: { name: string; error: string }[]): unknown {
  return {
    machine,
    benchmarks: results.map((r) => ({
      ...r,
      figures: r.figures.map((f) => ({ ...f, ratio: ratios(f), goalMet: goalMet(f) })),
    })),
    failures,
  }
}
