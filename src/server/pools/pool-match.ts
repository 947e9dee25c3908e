import type { SandboxNetwork } from '../../shared/index.js'
import type { CreateSandboxInput } from '../sandbox-service.js'

/** The config a pooled sandbox was started with; a create must ask for exactly this (or leave it unset). */
export interface PooledConfig {
  template: string
  /** The runtime the agent started it on (known once one has started). */
  runtime?: string
  memoryMiB: number
  cpus: number
  pidsMax: number
  diskMiB: number
}

/**
 * Whether a create may take a pooled sandbox: same template, the same limits (or none given), no
 * env (a pooled sandbox started without it, and env is fixed at start) and a network (pooled
 * sandboxes have one; its policy is set at hand-over). Labels and the timeout do not matter
 * either: they are set at hand-over too.
 */
export function matchesPool(input: CreateSandboxInput, network: SandboxNetwork, pooled: PooledConfig): boolean {
  if (input.template !== pooled.template) return false
  if (input.runtime !== undefined && pooled.runtime !== undefined && input.runtime !== pooled.runtime) return false
  if (input.env && Object.keys(input.env).length > 0) return false
  if (network === 'none') return false
  if (input.memoryMiB !== undefined && input.memoryMiB !== pooled.memoryMiB) return false
  if (input.cpus !== undefined && input.cpus !== pooled.cpus) return false
  if (input.pidsMax !== undefined && input.pidsMax !== pooled.pidsMax) return false
  if (input.diskMiB !== undefined && input.diskMiB !== pooled.diskMiB) return false
  return true
}
