import assert from 'node:assert/strict'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { describe, it } from 'node:test'
import type { AgentExecRequest } from '../../agent/index.js'
import { startTestServer } from '../test-server.fixture.js'
import type { TestServer } from '../test-server.fixture.js'

/** One record as the lister prints it: 11 NUL-ended fields. */
const record = ['f', 'f', '644', '0', '1', 'u', 'g', '/x', '', '', ''].join('\0') + '\0'

/** A test server whose sandboxes' /usr/bin/perl (the lister) is `hostile`: it runs until finished or killed, and prints what the test makes it. */
async function withHostilePerl(hostile: (id: string, pid: number) => void): Promise<{ t: TestServer; sandboxId: string; headers: Record<string, string> }> {
  const t = await startTestServer()
  const exec = t.agent.exec.bind(t.agent)
  t.agent.exec = async (id: string, req: AgentExecRequest, options) => {
    if (req.argv[0] !== '/usr/bin/perl') return exec(id, req, options)
    const started = await exec(id, { ...req, argv: ['wait'] }, options)
    hostile(id, started.pid)
    return started
  }
  const sbx = (await t.request('POST', '/sandboxes', { body: { templateID: 'debian' }, key: null, headers: { 'x-api-key': t.server.apiKey } })).json
  const headers = { 'e2b-sandbox-id': sbx.sandboxID, 'x-access-token': sbx.envdAccessToken, 'connect-protocol-version': '1' }
  return { t, sandboxId: sbx.sandboxID, headers }
}

describe("the files API's listings, against a lister that the sandbox replaced", () => {
  it('cut a listing past 100,000 entries as it is printed, and kill the helper', async () => {
    let printed = 0
    let killed: Promise<void> = Promise.resolve()
    const chunk = record.repeat(1000)
    const { t, headers } = await withHostilePerl((id, pid) => {
      const p = t.agent.sandboxes.get(id)!.processes.get(pid)!
      // Prints for ever, 1,000 records a turn, until it is killed.
      killed = (async () => {
        while (p.result === null) {
          t.agent.print(id, pid, 'stdout', chunk)
          printed += 1000
          await nextTurn()
        }
      })()
    })
    try {
      const res = await t.request('POST', '/filesystem.Filesystem/ListDir', { key: null, body: { path: '/tmp', depth: 1 }, headers })
      assert.equal(res.json.code, 'resource_exhausted', res.body.toString())
      assert.match(res.json.message, /^list \/tmp: more than 100000 entries: ask for less/)
      await killed
      // Cut where the count passed, not at the 64 MiB of bytes (some 2.7 million of these records).
      assert.ok(printed < 300_000, `${printed} records printed before the helper was killed`)
    } finally {
      await t.close()
    }
  })

  it('take one entry of a stat, and 1 MiB at most of its helper', async () => {
    let mode: 'two' | 'long' = 'two'
    const { t, headers } = await withHostilePerl((id, pid) => {
      t.agent.print(id, pid, 'stdout', mode === 'two' ? record + record : 'x'.repeat(2 * 1024 * 1024))
      t.agent.finish(id, pid, 0)
    })
    try {
      const stat = await t.request('POST', '/filesystem.Filesystem/Stat', { key: null, body: { path: '/tmp/x' }, headers })
      assert.equal(stat.json.code, 'failed_precondition', stat.body.toString())
      assert.match(stat.json.message, /^stat \/tmp\/x: the helper printed more than one entry/)
      mode = 'long'
      const read = await t.request('GET', '/files?path=/tmp/x', { key: null, headers })
      assert.equal(read.status, 429, read.body.toString())
      assert.match(read.json.message, /^read \/tmp\/x: the answer is larger than the 1 MiB a helper may print/)
    } finally {
      await t.close()
    }
  })

  it('run four helpers of one sandbox at once, the other calls waiting their turn', async () => {
    const started: { id: string; pid: number }[] = []
    let onStart = (): void => undefined
    const { t, headers } = await withHostilePerl((id, pid) => {
      started.push({ id, pid })
      onStart()
    })
    try {
      const waits = () => t.logs.records.filter((r) => r.msg === 'file helper waits for a free slot').length
      const answers = Array.from({ length: 8 }, () => t.request('POST', '/filesystem.Filesystem/Stat', { key: null, body: { path: '/tmp/x' }, headers }))
      // Each call has either started its helper or waits for a turn.
      const placed = (): boolean => started.length + waits() === 8
      await new Promise<void>((resolve) => {
        onStart = () => void (placed() && resolve())
        void t.logs.waitFor(placed).then(() => resolve())
      })
      assert.equal(started.length, 4, `${started.length} helpers at once`)
      // Each that ends lets one more start.
      let finished = 0
      onStart = () => undefined
      while (finished < 8) {
        const next = started[finished]
        if (!next) {
          await new Promise<void>((resolve) => (onStart = resolve))
          continue
        }
        assert.ok(started.length - finished <= 4, `${started.length - finished} helpers at once`)
        t.agent.print(next.id, next.pid, 'stdout', record)
        t.agent.finish(next.id, next.pid, 0)
        finished++
      }
      for (const res of await Promise.all(answers)) assert.equal(res.status, 200, res.body.toString())
    } finally {
      // Helpers left running (a failed assertion) would hold their calls, and the server's close, for ever.
      for (const { id, pid } of started) if (t.agent.sandboxes.get(id)?.processes.get(pid)?.result === null) t.agent.finish(id, pid, 0)
      await t.close()
    }
  })
})
