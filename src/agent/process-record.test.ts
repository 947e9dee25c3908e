import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { RuntimeProcess } from '../runtime/index.js'
import type { ProcessResult } from '../shared/index.js'
import { OutputBudget } from './output-budget.js'
import { ProcessRecord } from './process-record.js'

/** A process that runs until `end`. */
function running(): { process: RuntimeProcess; end(result: ProcessResult): void } {
  let end!: (result: ProcessResult) => void
  const result = new Promise<ProcessResult>((resolve) => (end = resolve))
  const process: RuntimeProcess = { pid: 7, result, writeStdin: async () => undefined, closeStdin: () => undefined, kill: async () => undefined }
  return { process, end }
}

const ended = { exitCode: 0, signal: null, timedOut: false, durationMs: 1 } as unknown as ProcessResult

/** The stdout a follower that attaches now reads, up to the end (of a process that ended). */
async function keptStdout(record: ProcessRecord): Promise<Buffer[]> {
  const chunks: Buffer[] = []
  for await (const event of record.follow()) {
    if (event.type === 'stdout') chunks.push(Buffer.from(event.data, 'base64'))
    if (event.type === 'end') break
  }
  return chunks
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

  it("shares its sandbox's budget with the other running processes: the one that keeps the most loses its oldest output, down to a tail", async () => {
    const MiB = 1024 * 1024
    const budget = new OutputBudget({ limitBytes: 16 * MiB, tailBytes: 256 * 1024 })
    const procs = Array.from({ length: 40 }, (_, i) => {
      const p = running()
      return { ...p, record: new ProcessRecord(100 + i, ['cat'], '/', p.process, budget) }
    })
    // 40 processes of 1 MiB chunks, 2 MiB each: 80 MiB, where each alone is under its own 8 MiB.
    for (let round = 0; round < 2; round++) {
      for (const [i, { record }] of procs.entries()) record.output('stdout', Buffer.alloc(MiB, (i + round * 40) % 256))
    }
    const kept = procs.reduce((n, p) => n + p.record.outputBytes, 0)
    assert.ok(kept <= 16 * MiB, `${kept} bytes kept between 40 processes`)
    assert.equal(budget.totalBytes, kept)
    // Every one keeps the newest bytes of its newest chunk, a tail at least.
    for (const [i, { record, end, process }] of procs.entries()) {
      end(ended)
      await process.result
      const newest = Buffer.concat(await keptStdout(record)).subarray(-256 * 1024)
      assert.ok(newest.length >= 200 * 1024 && newest.every((b) => b === (i + 40) % 256), `process ${i} lost its newest output`)
    }
    // Ended ones no longer count: the finished processes' rule of the agent holds them.
    assert.equal(budget.totalBytes, 0)
  })

  it('takes from the process that keeps the most, not from a quiet one', async () => {
    const MiB = 1024 * 1024
    const budget = new OutputBudget({ limitBytes: 4 * MiB, tailBytes: 64 * 1024 })
    const quiet = running()
    const loud = running()
    const q = new ProcessRecord(1, ['quiet'], '/', quiet.process, budget)
    const l = new ProcessRecord(2, ['loud'], '/', loud.process, budget)
    q.output('stdout', Buffer.from('started\n'))
    for (let i = 0; i < 30; i++) l.output('stdout', Buffer.alloc(256 * 1024, i))
    assert.ok(budget.totalBytes <= 4 * MiB, `${budget.totalBytes} bytes kept`)
    quiet.end(ended)
    loud.end(ended)
    await Promise.all([quiet.process.result, loud.process.result])
    assert.equal(Buffer.concat(await keptStdout(q)).toString(), 'started\n')
    const loudKept = await keptStdout(l)
    assert.equal(loudKept.at(-1)![0], 29, 'the newest output is kept')
    assert.ok(loudKept.length < 30, 'the oldest output was dropped')
  })
})
