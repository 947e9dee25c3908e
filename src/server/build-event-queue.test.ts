import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TemplateBuildEvent } from '../shared/index.js'
import { buildEventQueue } from './build-event-queue.js'

const mib = Buffer.alloc(1024 * 1024, 97).toString('base64')

describe("a build's event queue for one client", () => {
  it('holds at most its bound of output for a client that does not read, says what it dropped, and keeps every other event', async () => {
    const queue = buildEventQueue(4 * 1024 * 1024)
    queue.push({ type: 'step', index: 1, cmd: 'RUN yes' })
    for (let i = 0; i < 100; i++) queue.push({ type: 'stdout', index: 1, data: mib })
    queue.push({ type: 'step_end', index: 1, exitCode: 0 })
    queue.push({ type: 'progress', message: 'committed' })
    queue.end()
    const read: TemplateBuildEvent[] = []
    for await (const event of queue) read.push(event)
    const output = read.filter((e) => e.type === 'stdout')
    assert.equal(output.length, 3, 'the newest 3 MiB fit with their overhead')
    const notice = read.find((e) => e.type === 'progress' && e.message.includes('dropped'))
    assert.deepEqual(notice, { type: 'progress', message: `${97 * 1024 * 1024} bytes of output dropped: this client read more slowly than the build printed` })
    assert.deepEqual(read.filter((e) => e.type !== 'stdout' && e !== notice).map((e) => e.type), ['step', 'step_end', 'progress'])
  })

  it('drops nothing for a client that keeps up', async () => {
    const queue = buildEventQueue(2 * 1024 * 1024)
    const reader = (async () => {
      let n = 0
      for await (const event of queue) if (event.type === 'stdout') n++
      return n
    })()
    for (let i = 0; i < 20; i++) {
      queue.push({ type: 'stdout', index: 1, data: mib })
      await new Promise((resolve) => setImmediate(resolve))
    }
    queue.end()
    assert.equal(await reader, 20)
  })

  it('drops the oldest output not yet read, never counting what the client read already', async () => {
    const queue = buildEventQueue(2 * 1024 * 1024)
    const reader = queue[Symbol.asyncIterator]()
    queue.push({ type: 'stdout', index: 1, data: mib })
    assert.equal(((await reader.next()).value as TemplateBuildEvent).type, 'stdout', 'the first MiB was read')
    for (let i = 0; i < 3; i++) queue.push({ type: 'stderr', index: i + 2, data: mib })
    queue.end()
    const rest: TemplateBuildEvent[] = []
    for (let r = await reader.next(); !r.done; r = await reader.next()) rest.push(r.value)
    assert.deepEqual(rest.map((e) => (e.type === 'progress' ? e.message : `${e.type} ${'index' in e ? e.index : ''}`)), [
      `${2 * 1024 * 1024} bytes of output dropped: this client read more slowly than the build printed`,
      'stderr 4',
    ])
  })
})
