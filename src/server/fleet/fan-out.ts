/** A call made of every live agent at once, where one agent's failure or silence costs only its own answer. */
import type { AgentApi } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import type { CallOptions, Logger } from '../../shared/index.js'

/** How long a call made of every agent waits for each one's answer, unless the fleet says otherwise. */
export const defaultAnswerTimeoutMs = 30_000

/** A live agent to ask. */
export interface LiveAgent {
  id: string
  api: AgentApi
}

/** Options of askEach. */
export interface AskEachOptions {
  /** What is asked, for the log. */
  what: string
  /** How long each agent may take. */
  timeoutMs: number
  logger: Logger
}

/**
 * Asks each agent at once. An agent whose answer fails (its link, its say-so, or the contract) or
 * does not come within `timeoutMs` answers undefined, logged; the others' answers go on. Only the
 * caller's own cancel fails the whole.
 */
export async function askEach<T>(agents: LiveAgent[], ask: (agent: LiveAgent, o: CallOptions) => Promise<T>, options: AskEachOptions, o: CallOptions = {}): Promise<{ agent: LiveAgent; answer: T | undefined }[]> {
  const timeoutMs = Math.min(options.timeoutMs, o.timeoutMs ?? Number.POSITIVE_INFINITY)
  return Promise.all(
    agents.map(async (agent) => {
      // A timer of our own, not AbortSignal.timeout: on Node 20 a timeout signal that only
      // AbortSignal.any refers to can be collected before it fires, and the call then never ends.
      const deadline = new AbortController()
      const timer = setTimeout(() => deadline.abort(new DOMException(`no answer within ${timeoutMs} ms`, 'TimeoutError')), timeoutMs)
      const cancel = (): void => deadline.abort(o.signal?.reason)
      o.signal?.addEventListener('abort', cancel, { once: true })
      try {
        if (o.signal?.aborted) cancel()
        return { agent, answer: await ask(agent, { signal: deadline.signal }) }
      } catch (err) {
        if (o.signal?.aborted) throw err
        options.logger.warn({ agentId: agent.id, err: SandstormError.from(err) }, `an agent's ${options.what} failed or came late; left out`)
        return { agent, answer: undefined }
      } finally {
        clearTimeout(timer)
        o.signal?.removeEventListener('abort', cancel)
      }
    }),
  )
}
