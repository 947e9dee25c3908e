/** The server's usage sampling flags, shared by `up` and `server`. */
import type { Command } from 'commander'
import { parseDuration } from './duration.js'

/** Flags added by addMetricsFlags. */
export interface MetricsFlags {
  metricsInterval: string
}

/** Adds `--metrics-interval`. */
export function addMetricsFlags(cmd: Command): Command {
  return cmd.option('--metrics-interval <duration>', "how often every sandbox's CPU, memory and disk are sampled (sandstorm metrics, E2B's getMetrics)", '5s')
}

/** The server's sampling options for the flags, checked. */
export function metricsOptionsOf(flags: MetricsFlags): { metricsIntervalMs: number } {
  return { metricsIntervalMs: parseDuration(flags.metricsInterval, '--metrics-interval') }
}
