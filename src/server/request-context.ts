/** The request an error belongs to, for the generic message a client sees and the log line that has the rest. */
import { AsyncLocalStorage } from 'node:async_hooks'
import { newId } from '../shared/index.js'

const storage = new AsyncLocalStorage<{ requestId: string }>()

/** Runs `fn` as request `requestId` (a new id when none is given); `currentRequestId` finds it in anything `fn` awaits. */
export function withRequestId<T>(fn: (requestId: string) => T, requestId = newId('req')): T {
  return storage.run({ requestId }, () => fn(requestId))
}

/** The id of the request being served, if any. */
export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId
}

/** What a client sees for an error whose message is not for it. */
export function hiddenMessage(): string {
  const id = currentRequestId()
  return `an internal error happened; the server logged its cause${id ? ` as request ${id}` : ''}`
}
