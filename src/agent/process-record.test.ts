import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { RuntimeProcess } from '../runtime/index.js'
import type { ProcessResult } from '../shared/index.js'
import { ProcessRecord } from './process-record.js'

/** A process that runs until `end`. */
function running(): { process: RuntimeProcess; end(result: ProcessResult): void } {
  let end!: (result: ProcessResult) => void
  const result = new Promise<ProcessResult>((resolve) => (end = resolve))
  const process: RuntimeProcess = { pid: 7, result, writeStdin: async () => undefined, closeStdin: () => undefined, kill: async () => undefined }
  return { process, end }
}

/** Every event a follower that attaches now reads, up to the end. */
async function replay(record: ProcessRecord): Promise<number> {
  let n = 0
  for await (const event of record.follow()) {
    n++
    if (event.type === 'end') break
  }
  return n
}

describe('a process record', () => {
  it('counts what each kept event costs: a process printing a byte at a time keeps tens of thousands, not millions', async () => {
    const { process, end } = running()
    const record = new ProcessRecord(7, ['yes'], '/', process)
    for (let i = 0; i < 1_000_000; i++) record.output('stdout', Buffer.of(121))
    end({ exitCode: 0, signal: null, timedOut: false, durationMs: 1 } as unknown as ProcessResult)
    await process.result
    const kept = await replay(record)
    assert.ok(kept < 40_000, `${kept} events kept`)
    assert.ok(record.outputBytes <= 8 * 1024 * 1024)
  })

  it('keeps 8 MiB of output in big chunks, the newest', async () => {
    const { process, end } = running()
    const record = new ProcessRecord(7, ['cat'], '/', process)
    for (let i = 0; i < 20; i++) record.output('stdout', Buffer.alloc(1024 * 1024, i))
    end({ exitCode: 0, signal: null, timedOut: false, durationMs: 1 } as unknown as ProcessResult)
    await process.result
    const chunks: Buffer[] = []
    for await (const event of record.follow()) {
      if (event.type === 'stdout') chunks.push(Buffer.from(event.data, 'base64'))
      if (event.type === 'end') break
    }
    assert.equal(chunks.length, 7, 'the newest 7 MiB chunks and their overhead fit in 8 MiB')
    assert.equal(chunks.at(-1)![0], 19)
  })
})
