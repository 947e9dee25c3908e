import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { connect } from 'node:tls'
import { describe, it } from 'node:test'
import { createSniReader, readSni } from './tls-sni.js'

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

  it('reads a ClientHello cut into records of 3 bytes and sent a byte at a time, copying each byte a bounded number of times', async () => {
    const hello = await clientHello('allowed.test')
    // The handshake bytes of the hello's records, again as records of 3 bytes each (a valid, if odd, framing).
    const handshake: Buffer[] = []
    for (let at = 0; at < hello.length; at += 5 + hello.readUInt16BE(at + 3)) handshake.push(hello.subarray(at + 5, at + 5 + hello.readUInt16BE(at + 3)))
    const body = Buffer.concat(handshake)
    const records: Buffer[] = []
    for (let at = 0; at < body.length; at += 3) {
      const part = body.subarray(at, at + 3)
      records.push(Buffer.from([0x16, 3, 1, 0, part.length]), part)
    }
    const stream = Buffer.concat(records)
    const concat = Buffer.concat
    let copied = 0
    Buffer.concat = ((list: readonly Uint8Array[], length?: number) => {
      const out = concat(list, length)
      copied += out.length
      return out
    }) as typeof Buffer.concat
    let result
    try {
      const reader = createSniReader()
      for (let i = 0; i < stream.length && (!result || 'more' in result); i++) result = reader.push(stream.subarray(i, i + 1))
    } finally {
      Buffer.concat = concat
    }
    assert.deepEqual(result, { name: 'allowed.test' })
    assert.ok(copied <= 4 * stream.length, `${copied} bytes copied for a stream of ${stream.length}: the work grows faster than the stream`)
  })
})
