import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, connect, type AddressInfo, type Socket } from 'node:net'
import { test } from 'node:test'
import { createInitChannel, type CommandEvents, type ExitCause, type StartFailure } from './init-channel.js'

/** A channel over a real loopback connection, with the init's end for the test to speak. */
async function channelPair() {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const accepted = once(server, 'connection') as Promise<[Socket]>
  const agentEnd = connect((server.address() as AddressInfo).port, '127.0.0.1')
  const [initEnd] = await accepted
  server.close()
  return { channel: createInitChannel(agentEnd), initEnd }
}

function frame(type: number, id: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.writeUInt32LE(5 + payload.length, 0)
  head[4] = type
  head.writeUInt32LE(id, 5)
  return Buffer.concat([head, payload])
}

function events(on: Partial<CommandEvents>): CommandEvents {
  const none = () => undefined
  return { started: none, failed: none, stdout: none, stderr: none, ack: none, stdinGone: none, exit: none, ...on }
}

const request = { argv: ['true'], env: [], cwd: '/', uid: 0, gid: 0 }

test("a start the init refused carries its reason and errno; an older init's text says its reason by its first word, and a text of no reason is 'unknown'", async () => {
  const { channel, initEnd } = await channelPair()
  try {
    const failures: StartFailure[] = []
    let done!: () => void
    const all = new Promise<void>((resolve) => (done = resolve))
    const ids = [1, 2, 3, 4, 5, 6].map(() => channel.start(request, events({ failed: (f) => failures.push(f) === 6 && done() })))
    const coded = (reason: number, errno: number, text: string) => {
      const head = Buffer.alloc(5)
      head[0] = reason
      head.writeUInt32LE(errno, 1)
      return Buffer.concat([head, Buffer.from(text)])
    }
    initEnd.write(frame(2, ids[0]!, coded(8, 110, 'start: the keeper did not report within 10000 ms')))
    initEnd.write(frame(2, ids[1]!, coded(5, 11, 'fork: Resource temporarily unavailable')))
    initEnd.write(frame(2, ids[2]!, Buffer.from('cwd: No such file or directory')))
    initEnd.write(frame(2, ids[3]!, Buffer.from('fork: Resource temporarily unavailable')))
    initEnd.write(frame(2, ids[4]!, Buffer.from('terminal: No space left on device')))
    // Hostile text: the init is the sandbox's.
    initEnd.write(frame(2, ids[5]!, Buffer.from('constructor: x')))
    await all
    assert.deepEqual(failures, [
      { reason: 'silent', errno: 110, text: 'start: the keeper did not report within 10000 ms' },
      { reason: 'fork', errno: 11, text: 'fork: Resource temporarily unavailable' },
      { reason: 'cwd', errno: 0, text: 'cwd: No such file or directory' },
      { reason: 'fork', errno: 11, text: 'fork: Resource temporarily unavailable' },
      { reason: 'terminal', errno: 28, text: 'terminal: No space left on device' },
      { reason: 'unknown', errno: 0, text: 'constructor: x' },
    ])
  } finally {
    channel.close()
    initEnd.destroy()
  }
})

test('an exit says when the command was killed with its keeper', async () => {
  const { channel, initEnd } = await channelPair()
  try {
    const exits: [number, ExitCause | undefined][] = []
    let done!: () => void
    const both = new Promise<void>((resolve) => (done = resolve))
    const on = events({ exit: (status, cause) => exits.push([status, cause]) === 2 && done() })
    const [killed, plain] = [channel.start(request, on), channel.start(request, on)]
    const status = (n: number, cause?: number) => {
      const b = Buffer.alloc(cause === undefined ? 4 : 5)
      b.writeUInt32LE(n, 0)
      if (cause !== undefined) b[4] = cause
      return b
    }
    initEnd.write(frame(1, killed, status(15)))
    initEnd.write(frame(6, killed, status(137, 2)))
    initEnd.write(frame(1, plain, status(16)))
    initEnd.write(frame(6, plain, status(0)))
    await both
    assert.deepEqual(exits, [
      [137, { kind: 'keeperKilled' }],
      [0, undefined],
    ])
  } finally {
    channel.close()
    initEnd.destroy()
  }
})
