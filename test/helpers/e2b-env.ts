/** Points the unmodified `e2b` SDK at a test stack the way a user does: with E2B_* environment variables only. */
import { createApiKeyInDataDir } from '../../src/server/index.js'
import type { Stack } from './stack.js'

/** Sets E2B_API_URL, E2B_SANDBOX_URL and a new e2b-form E2B_API_KEY for this stack. */
export function useStackForE2b(stack: Stack): void {
  process.env.E2B_API_URL = stack.server.url
  process.env.E2B_SANDBOX_URL = stack.server.url
  process.env.E2B_API_KEY = createApiKeyInDataDir(stack.dataDir, 'e2b')
}
