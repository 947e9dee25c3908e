import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { connect } from 'node:tls'
import { describe, it } from 'node:test'
import { readSni } from './tls-sni.js'

/** The first bytes a real TLS client sends for `servername` (Node's OpenSSL), caught by a plain TCP server. */
async function clientHello(servername: string | undefined): Promise<Buffer> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const got = new Promise<Buffer>((resolve) =>
    server.once('connection', (socket) => {
      let data = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        data = Buffer.concat([data, chunk])
        if (!('more' in readSni(data))) {
          resolve(data)
          socket.destroy()
        }
      })
    }),
  )
  const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ...(servername ? { servername } : {}), rejectUnauthorized: false })
  client.on('error', () => undefined)
  const hello = await got
  client.destroy()
  server.close()
  return hello
}

describe('readSni', () => {
  it('reads the server name of a real ClientHello, whole or arriving in pieces', async () => {
    const hello = await clientHello('Allowed.Test')
    assert.deepEqual(readSni(hello), { name: 'allowed.test' })
    for (const cut of [1, 5, 9, hello.length - 1]) assert.deepEqual(readSni(hello.subarray(0, cut)), { more: true }, `cut at ${cut}`)
  })

  it('refuses a ClientHello without a name, and what is not TLS', async () => {
    assert.ok('refused' in readSni(await clientHello(undefined)))
    assert.deepEqual(readSni(Buffer.from('GET / HTTP/1.1\r\n')), { refused: 'not a TLS handshake' })
  })
})
