import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { ExecEvent } from './wire/index.js'
import { toCommandResult } from './command-result.js'
import { CommandExitError } from './errors.js'
import { checkCommandResult, consumeExecEvents, createOutputSink } from './exec-stream.js'
import { startFakeApi } from './fake-api.fixture.js'
import { Sandbox } from './index.js'

const MiB = 1024 * 1024

/** `count` MiB of stdout as an exec's events, one MiB each, then an exit with `exitCode`. */
async function* bigOutput(count: number, exitCode: number): AsyncGenerator<ExecEvent> {
  yield { type: 'start', pid: 7 }
  const data = Buffer.alloc(MiB, 'x').toString('base64')
  for (let i = 0; i < count; i++) yield { type: 'stdout', data }
  yield { type: 'end', result: { exitCode, signal: null, timedOut: false, oomKilled: false, durationMs: 1 } }
}

test('with keepOutput: false, 640 MiB of output streams through the sink with flat memory, and the result keeps its exit code', async () => {
  let streamed = 0
  let peak = 0
  const before = process.memoryUsage()
  const sink = createOutputSink({
    keepOutput: false,
    onStdoutBytes: (b) => {
      streamed += b.length
      // Sampled as it goes: what the sink holds shows here, whatever the collector does after.
      if (streamed % (64 * MiB) === 0) peak = Math.max(peak, process.memoryUsage().heapUsed - before.heapUsed)
    },
  })
  // Past V8's longest string (about 512 MiB): kept output would throw "Invalid string length".
  const { pid, result } = await consumeExecEvents(bigOutput(640, 3), sink)
  assert.equal(streamed, 640 * MiB)
  assert.equal(sink.stdout, '')
  assert.ok(peak < 128 * MiB, `heap grew by ${Math.round(peak / MiB)} MiB`)
  assert.throws(() => checkCommandResult(toCommandResult(pid!, result!, sink.stdout, sink.stderr)), (e: unknown) => e instanceof CommandExitError && e.exitCode === 3)
})

test('commands.run and a background handle keep output by default, and not with keepOutput: false', async () => {
  const fake = await startFakeApi()
  try {
    const sbx = await Sandbox.create({ apiUrl: fake.url, apiKey: fake.apiKey })
    assert.equal((await sbx.commands.run(['echo', 'kept'])).stdout, 'kept\n')
    const seen: string[] = []
    const onStdoutBytes = (b: Uint8Array): void => void seen.push(Buffer.from(b).toString())
    const fg = await sbx.commands.run(['echo', 'streamed'], { keepOutput: false, onStdoutBytes })
    assert.deepEqual([fg.exitCode, fg.stdout], [0, ''])
    await assert.rejects(sbx.commands.run(['fail'], { keepOutput: false, onStdoutBytes }), (e: unknown) => e instanceof CommandExitError && e.exitCode === 3 && e.stdout === '')
    const bg = await sbx.commands.run(['echo', 'behind'], { background: true, keepOutput: false, onStdoutBytes })
    const ended = await bg.wait()
    assert.deepEqual([ended.exitCode, ended.stdout, bg.stdout], [0, '', ''])
    assert.deepEqual(seen, ['streamed\n', 'partial\n', 'behind\n'])
  } finally {
    await fake.close()
  }
})
