import assert from 'node:assert/strict'
import { test } from 'node:test'
import { chunksOf, parseNdjson } from './ndjson.js'
import { SandstormSdkError } from './errors.js'

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0
  return new ReadableStream({
    pull(c) {
      if (i < chunks.length) c.enqueue(chunks[i++]!)
      else c.close()
    },
  })
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const v of it) out.push(v)
  return out
}

test('lines split across chunks are joined', async () => {
  const text = '{"a":1}\n{"b":[1,2,3]}\n\n{"c":"x"}'
  const bytes = new TextEncoder().encode(text)
  // Every split point, one byte at a time.
  const chunks = [...bytes].map((b) => new Uint8Array([b]))
  assert.deepEqual(await collect(parseNdjson(streamOf(chunks))), [{ a: 1 }, { b: [1, 2, 3] }, { c: 'x' }])
})

test('a multi-byte character split across chunks decodes whole', async () => {
  const bytes = new TextEncoder().encode('{"s":"é€😀"}\n')
  for (let cut = 1; cut < bytes.length; cut++) {
    const chunks = [bytes.slice(0, cut), bytes.slice(cut)]
    assert.deepEqual(await collect(parseNdjson(streamOf(chunks))), [{ s: 'é€😀' }], `cut at ${cut}`)
  }
})

test('an async iterable source and CRLF line ends work', async () => {
  async function* gen(): AsyncGenerator<Uint8Array> {
    yield new TextEncoder().encode('{"a":1}\r\n{"a"')
    yield new TextEncoder().encode(':2}\r\n')
  }
  assert.deepEqual(await collect(parseNdjson(gen())), [{ a: 1 }, { a: 2 }])
})

test('a line that is not JSON fails with what came', async () => {
  await assert.rejects(collect(parseNdjson(streamOf([new TextEncoder().encode('{"a":1}\nnot json\n')]))), (err: unknown) => {
    assert.ok(err instanceof SandstormSdkError)
    assert.match(err.message, /not json/)
    return true
  })
})

test('breaking out early cancels the source', async () => {
  let cancelled = false
  const source = new ReadableStream<Uint8Array>({
    pull(c) {
      c.enqueue(new TextEncoder().encode('{"n":1}\n'))
    },
    cancel() {
      cancelled = true
    },
  })
  for await (const v of parseNdjson<{ n: number }>(source)) {
    assert.equal(v.n, 1)
    break
  }
  assert.equal(cancelled, true)
})

test('an abort ends a read that waits on a body that never answers, and cancels the body', async () => {
  let cancelled: unknown
  // A body whose next chunk never comes, as a fetch that does not end its body's read on abort.
  const stalled = new ReadableStream<Uint8Array>({ pull: () => new Promise<void>(() => undefined), cancel: (reason) => void (cancelled = reason) })
  const controller = new AbortController()
  const reading = collect(chunksOf(stalled, controller.signal))
  const reason = new Error('left by the caller')
  setImmediate(() => controller.abort(reason))
  await assert.rejects(reading, (err) => err === reason)
  assert.equal(cancelled, reason)
})
