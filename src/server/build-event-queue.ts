/**
 * A build's events on their way to one client. The build does not wait for the client: its steps'
 * output arrives as fast as they print. A client that reads more slowly than that (or not at all,
 * its connection open) would have the server hold all of it, so output waiting past a bound is
 * dropped, oldest first, and the client is told how much; steps, progress and the end never are.
 */
import type { TemplateBuildEvent } from '../shared/index.js'

/** What one queued event costs beyond its output (the object and its slot). */
const eventOverheadBytes = 256

/** The queue: `push` from the build, `end` when it is over, read by one consumer. */
export interface BuildEventQueue extends AsyncIterable<TemplateBuildEvent> {
  push(event: TemplateBuildEvent): void
  end(): void
}

const outputBytes = (e: TemplateBuildEvent): number => (e.type === 'stdout' || e.type === 'stderr' ? Buffer.byteLength(e.data, 'base64') + eventOverheadBytes : 0)

/** A queue that holds at most `maxOutputBytes` of output for its reader. */
export function buildEventQueue(maxOutputBytes = 4 * 1024 * 1024): BuildEventQueue {
  const items: TemplateBuildEvent[] = []
  let queued = 0
  let dropped = 0
  let ended = false
  let wake: (() => void) | undefined
  const notify = (): void => {
    wake?.()
    wake = undefined
  }
  return {
    push(event) {
      items.push(event)
      queued += outputBytes(event)
      while (queued > maxOutputBytes) {
        const oldest = items.findIndex((e) => outputBytes(e) > 0)
        const [gone] = items.splice(oldest, 1)
        const bytes = outputBytes(gone!)
        queued -= bytes
        dropped += bytes - eventOverheadBytes
      }
      notify()
    },
    end() {
      ended = true
      notify()
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (dropped > 0) {
          const message = `${dropped} bytes of output dropped: this client read more slowly than the build printed`
          dropped = 0
          yield { type: 'progress', message }
          continue
        }
        const item = items.shift()
        if (item !== undefined) {
          queued -= outputBytes(item)
          yield item
          continue
        }
        if (ended) return
        await new Promise<void>((resolve) => (wake = resolve))
      }
    },
  }
}
