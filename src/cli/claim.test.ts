import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { claimHost } from './claim.js'

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const { port } = s.address() as AddressInfo
  await new Promise((r) => s.close(r))
  return port
}

test('a client that connects while a port is only held is dropped, and the port is let go at once', { timeout: 20_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-claim-'))
  try {
    const port = await freePort()
    const claim = await claimHost(dir, 'test', [{ host: '127.0.0.1', port, flag: '--port' }])
    // A client that would wait for an answer forever (as one retrying through a restart does).
    const client = connect(port, '127.0.0.1')
    client.on('error', () => undefined)
    await once(client, 'close')
    await claim.releasePorts()
    const real = createServer().listen(port, '127.0.0.1')
    await once(real, 'listening')
    await new Promise((r) => real.close(r))
    await claim.lock.release()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
