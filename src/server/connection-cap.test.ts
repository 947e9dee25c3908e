import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { Socket } from 'node:net'
import { closedByServer, openConnections } from '../../test/helpers/connections.js'
import { defaultFdShares } from './fd-shares.js'
import { startTestServer } from './test-server.fixture.js'

describe("the HTTP port's bound on connections", () => {
  it('closes connections past it as they come, and answers on the ones it holds', async () => {
    const t = await startTestServer({ maxConnections: 8 })
    const held: Socket[] = []
    try {
      const port = Number(new URL(t.server.url).port)
      await openConnections(port, 8, held)
      assert.equal(await closedByServer(port, held), true, 'a 9th connection stayed open')
      // One of the 8 it holds still gets an answer.
      const answer = await new Promise<string>((resolve, reject) => {
        let text = ''
        held[0]!.on('data', (c: Buffer) => {
          text += c.toString()
          if (text.includes('\r\n\r\n')) resolve(text)
        })
        held[0]!.on('error', reject)
        held[0]!.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
      })
      assert.match(answer, /^HTTP\/1\.1 200 /)
    } finally {
      for (const s of held) s.destroy()
      await t.close()
    }
  })

  it('is a quarter of the open-file limit by default, and connections into sandboxes another quarter (a quarter of those per sandbox, at most 1,024)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-limits-'))
    try {
      const file = join(dir, 'limits')
      const limits = (soft: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}              524288               files\n`
      await writeFile(file, limits('65536'))
      assert.deepEqual(defaultFdShares(file), { maxConnections: 16384, maxUpstream: 16384, maxUpstreamPerSandbox: 1024 })
      await writeFile(file, limits('1024'))
      assert.deepEqual(defaultFdShares(file), { maxConnections: 256, maxUpstream: 256, maxUpstreamPerSandbox: 64 })
      // Without procfs, the usual limit of 1,024.
      assert.deepEqual(defaultFdShares(join(dir, 'missing')), { maxConnections: 256, maxUpstream: 256, maxUpstreamPerSandbox: 64 })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
