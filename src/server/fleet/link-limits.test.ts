/**
 * What anyone who reaches the link's port can make the server hold, before any identity: a Join's
 * size, the streams of one connection, what a refused Join puts in the log; and an agent's answer
 * too large for the link, which fails its call and not the link.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { connect as connectHttp2 } from 'node:http2'
import type { Settings } from 'node:http2'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as grpc from '@grpc/grpc-js'
import { loadAgentLink, maxLinkMessageBytes, parseJoinToken, serverCommonName } from '../../proto/index.js'
import type { JoinReply, JoinRequest } from '../../proto/index.js'
import type { EntryInfo } from '../../shared/index.js'
import { startServer } from '../index.js'
import type { RunningServer } from '../index.js'
import { captureLogs } from '../test-server.fixture.js'
import type { LogCapture } from '../test-server.fixture.js'
import { startHostileFleet } from './hostile-agent.fixture.js'
import { maxStreamsPerConnection } from './link-service.js'

describe('the link before any identity', () => {
  let dir: string
  let server: RunningServer
  let logs: LogCapture
  let ca: Buffer
  let client: InstanceType<ReturnType<typeof loadAgentLink>['Client']>
  const joinWith = (req: JoinRequest): Promise<{ code: grpc.status | 'ok'; details: string }> =>
    new Promise((resolve) =>
      client.Join!(req, { deadline: Date.now() + 30_000 }, (err: grpc.ServiceError | null, _reply: JoinReply) =>
        resolve(err ? { code: err.code, details: err.details } : { code: 'ok', details: '' }),
      ),
    )
  const secret = (): string => parseJoinToken(server.fleet!.joinToken).secret

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-link-limits-'))
    logs = captureLogs()
    server = await startServer({ dataDir: join(dir, 'server'), port: 0, logger: logs.logger, fleet: { port: 0 } })
    ca = await readFile(join(dir, 'server', 'fleet', 'ca.crt'))
    const { Client } = loadAgentLink()
    const credentials = grpc.credentials.createSsl(ca, null, null, { checkServerIdentity: () => undefined })
    client = new Client(`127.0.0.1:${server.fleet!.port}`, credentials, {
      'grpc.ssl_target_name_override': serverCommonName,
      'grpc.default_authority': serverCommonName,
      'grpc.max_send_message_length': -1,
    })
  })
  after(async () => {
    client.close()
    await server.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('reads no Join larger than the link needs', async () => {
    const answer = await joinWith({ token: 'x'.repeat(maxLinkMessageBytes + 1), hostname: 'big' })
    assert.equal(answer.code, grpc.status.RESOURCE_EXHAUSTED, answer.details)
  })

  it('logs a bounded, printable cut of the hostname of a refused Join', async () => {
    const hostname = `${'h'.repeat(100_000)}\n\u001b[2J`
    assert.equal((await joinWith({ token: 'wrong', hostname })).code, grpc.status.UNAUTHENTICATED)
    const line = await logs.waitFor((r) => r.msg === 'refused a join: wrong token' && String(r.hostname).startsWith('hhh'))
    assert.ok(String(line.hostname).length <= 253, `${String(line.hostname).length} characters of hostname logged`)
    assert.match(String(line.hostname), /^[\x21-\x7e]*$/)
  })

  it('admits no agent with a malformed hostname, even with the token', async () => {
    const answer = await joinWith({ token: secret(), hostname: 'evil\nhost' })
    assert.equal(answer.code, grpc.status.INVALID_ARGUMENT, answer.details)
    const listed = (await (await fetch(`${server.url}/v1/agents`, { headers: { authorization: `Bearer ${server.apiKey}` } })).json()) as { agents: unknown[] }
    assert.deepEqual(listed.agents, [])
  })

  it('lets one connection hold a bounded number of streams', async () => {
    const session = connectHttp2(`https://127.0.0.1:${server.fleet!.port}`, { ca, servername: serverCommonName, rejectUnauthorized: false })
    session.on('error', () => undefined)
    try {
      const [settings] = (await once(session, 'remoteSettings')) as [Settings]
      assert.equal(settings.maxConcurrentStreams, maxStreamsPerConnection)
    } finally {
      session.close()
    }
  })
})

describe("an agent's answer too large for the link", () => {
  it('fails its call, and the link goes on', async () => {
    const fleet = await startHostileFleet()
    try {
      await fleet.startHonest()
      const id = await fleet.create()
      const entry = (i: number): EntryInfo => ({ name: `${i}`.padStart(200, 'f'), path: `/tmp/${`${i}`.padStart(200, 'f')}`, type: 'file', size: 0, mode: 0o644, uid: 0, gid: 0, modifiedAt: '2024-01-01T00:00:00.000Z' })
      const listDir = fleet.fake.listDir.bind(fleet.fake)
      fleet.fake.listDir = async (sid, path, o) => (path === '/huge' ? Array.from({ length: 60_000 }, (_, i) => entry(i)) : listDir(sid, path, o))
      const huge = await fleet.api(`/v1/sandboxes/${id}/fs/list?path=/huge`)
      assert.equal(huge.status, 429, (await huge.text()).slice(0, 200))
      const small = await fleet.api(`/v1/sandboxes/${id}/fs/list?path=/tmp`)
      assert.equal(small.status, 200, await small.text())
    } finally {
      await fleet.close()
    }
  })
})
