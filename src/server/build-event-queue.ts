/**
 * A build's events on their way to one client. The build does not wait for the client: its steps'
 * output arrives as fast as they print. A client that reads more slowly than that (or not at all,
 * its connection open) would have the server hold all of it, so output waiting past a bound is
 * dropped, oldest first, and the client is told how much; steps, progress and the end never are.
 */
import { outputEventOverheadBytes, type TemplateBuildEvent } from '../shared/index.js'

/** The queue: `push` from the build, `end` when it is over, read by one consumer. */
export interface BuildEventQueue extends AsyncIterable<TemplateBuildEvent> {
  push(event: TemplateBuildEvent): void
  end(): void
}

const outputBytes = (e: TemplateBuildEvent): number => (e.type === 'stdout' || e.type === 'stderr' ? Buffer.byteLength(e.data, 'base64') + outputEventOverheadBytes : 0)

/**
 * A queue that holds at most `maxOutputBytes` of output for its reader. Events are kept by their
 * arrival number, and the numbers of output events in a list of their own, so that a push past
 * the bound drops the oldest output, and a read takes the oldest event, each in constant time.
 */
export function buildEventQueue(maxOutputBytes = 4 * 1024 * 1024): BuildEventQueue {
  const events = new Map<number, TemplateBuildEvent>()
  let next = 0
  /** Arrival numbers of output events, oldest first from `outputsHead`; some may have been read already. */
  let outputs: number[] = []
  let outputsHead = 0
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
      const bytes = outputBytes(event)
      events.set(next, event)
      if (bytes > 0) outputs.push(next)
      next++
      queued += bytes
      while (queued > maxOutputBytes) {
        const oldest = outputs[outputsHead++]!
        const gone = events.get(oldest)
        if (!gone) continue // read already
        events.delete(oldest)
        queued -= outputBytes(gone)
        dropped += outputBytes(gone) - outputEventOverheadBytes
      }
      if (outputsHead > 1024 && outputsHead * 2 > outputs.length) {
        outputs = outputs.slice(outputsHead)
        outputsHead = 0
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
        const first = events.entries().next()
        if (!first.done) {
          const [at, item] = first.value
          events.delete(at)
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
