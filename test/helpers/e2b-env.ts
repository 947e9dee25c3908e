/** Points the unmodified `e2b` SDK at a test stack the way a user does: with E2B_* environment variables only. */
import { after, before } from 'node:test'
import { Sandbox } from 'e2b'
import { createApiKeyInDataDir } from '../../src/server/index.js'
import { startStack, type Stack } from './stack.js'

/** Sets E2B_API_URL, E2B_SANDBOX_URL and a new e2b-form E2B_API_KEY for this stack. */
export function useStackForE2b(stack: Stack): void {
  process.env.E2B_API_URL = stack.server.url
  process.env.E2B_SANDBOX_URL = stack.server.url
  process.env.E2B_API_KEY = createApiKeyInDataDir(stack.dataDir, 'e2b')
}

/** What a suite of the e2b SDK shares: its stack, and its default sandbox when it asked for one. */
export interface E2bSuite {
  readonly stack: Stack
  readonly sbx: Sandbox
}

/**
 * Registers the hooks of an e2b SDK suite (call it in the `describe`): a stack started before the
 * suite with E2B_* pointing at it, with `sandbox` one `Sandbox.create()` for the whole suite, and
 * both gone after it.
 */
export function e2bSuite(options: { sandbox?: boolean } = {}): E2bSuite {
  let stack: Stack | undefined
  let sbx: Sandbox | undefined
  before(async () => {
    stack = await startStack()
    useStackForE2b(stack)
    if (options.sandbox) sbx = await Sandbox.create()
  })
  after(async () => {
    await sbx?.kill().catch(() => undefined)
    await stack?.close()
  })
  const started = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`the suite's ${what} is not there: used before its before() hook, or it failed`)
    return value
  }
  return {
    get stack() {
      return started(stack, 'stack')
    },
    get sbx() {
      return started(sbx, 'sandbox (e2bSuite({ sandbox: true }))')
    },
  }
}
