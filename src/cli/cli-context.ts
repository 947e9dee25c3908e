/** What every command shares: the connection from the global flags, and how to print. */
import type { Command } from 'commander'
import { InvalidArgumentError, type ConnectionOptions } from '@sandstorm/sdk'
import { readSecretFile } from './secret-input.js'
import { printable } from './terminal-text.js'

/** Global flags, on the root program. */
export interface GlobalOptions {
  url?: string
  apiKey?: string
  apiKeyFile?: string
}

/** The SDK connection for a command: `--url` and `--api-key` (or `--api-key-file`), else the SDK's env and defaults (the SDK's own fetch over node:http). */
export function connectionOf(cmd: Command): ConnectionOptions {
  const g = cmd.optsWithGlobals<GlobalOptions>()
  const out: ConnectionOptions = {}
  if (g.url) out.apiUrl = g.url
  if (g.apiKey !== undefined && g.apiKeyFile !== undefined) throw new InvalidArgumentError('invalid_argument', '--api-key and --api-key-file: expected one of them, got both')
  if (g.apiKey) out.apiKey = g.apiKey
  else if (g.apiKeyFile !== undefined) out.apiKey = readSecretFile(g.apiKeyFile, '--api-key-file')
  return out
}

/** Prints a value as indented JSON on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}

/** Prints rows as a table with a header, columns padded to their widest cell; cells are made printable (agents and servers fill them). */
export function printTable(header: string[], cells: string[][]): void {
  const rows = cells.map((r) => r.map((c) => printable(c)))
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()
  process.stdout.write(`${[line(header), ...rows.map(line)].join('\n')}\n`)
}

/** Parses a positive integer flag. */
export function parsePositiveInt(text: string, flag: string): number {
  const n = Number(text)
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n <= 0) {
    throw new InvalidArgumentError('invalid_argument', `${flag}: expected a positive whole number, got "${text}"`)
  }
  return n
}

/** Parses a count flag: a whole number, 0 allowed. */
export function parseCount(text: string, flag: string): number {
  const n = Number(text)
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError('invalid_argument', `${flag}: expected a whole number (0 or more), got "${text}"`)
  }
  return n
}

/** Parses a positive number flag (fractions allowed). */
export function parsePositiveNumber(text: string, flag: string): number {
  const n = Number(text)
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new InvalidArgumentError('invalid_argument', `${flag}: expected a positive number, got "${text}"`)
  }
  return n
}
