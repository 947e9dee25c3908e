/** How a remote agent reaches the server: pinning the CA, joining with the token, and the credentials for every call. */
import { X509Certificate } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import * as grpc from '@grpc/grpc-js'
import { insecureHeaders, linkChannelOptions, loadAgentLink, parseJoinToken, serverCommonName } from '../proto/index.js'
import type { JoinReply } from '../proto/index.js'
import { newId, readSecretFile, SandstormError } from '../shared/index.js'

/** What every call to the server needs. */
export interface LinkIdentity {
  agentId: string
  /** Obtained by joining just now (not read from disk). */
  joined: boolean
  credentials: grpc.ChannelCredentials
  channelOptions: grpc.ChannelOptions
  /** Metadata for Control and Data (the token, on an --insecure link). */
  metadata(): grpc.Metadata
}

/** Splits `grpcs://host:port`, `https://host:port` or `host:port` into the target grpc-js dials. */
export function linkTarget(serverUrl: string): { host: string; port: number; target: string } {
  const match = /^(?:[a-z]+:\/\/)?(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(serverUrl.trim())
  if (!match) throw new SandstormError('invalid_argument', `server URL "${serverUrl}" is malformed: expected host:port, e.g. 198.18.0.1:7421`)
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port: Number(match[2]), target: `${match[1]}:${match[2]}` }
}

/**
 * The agent's identity: on an --insecure link an id kept in `dir` and the token; otherwise the
 * certificate kept in `dir`, or one obtained now by joining with the token.
 */
export async function loadLinkIdentity(o: { serverUrl: string; token?: string; dir: string; insecure: boolean }): Promise<LinkIdentity> {
  await mkdir(o.dir, { recursive: true, mode: 0o700 })
  const file = (name: string): string => join(o.dir, name)
  if (o.insecure) {
    if (!o.token) throw new SandstormError('invalid_argument', 'an --insecure agent needs --token on every start')
    parseJoinToken(o.token)
    const joined = !existsSync(file('agent-id'))
    if (joined) await writeFile(file('agent-id'), `${newId('ag')}\n`, { mode: 0o600 })
    const agentId = (await readFile(file('agent-id'), 'utf8')).trim()
    const token = parseJoinToken(o.token).secret
    return {
      agentId,
      joined,
      credentials: grpc.credentials.createInsecure(),
      channelOptions: linkChannelOptions,
      metadata() {
        const m = new grpc.Metadata()
        m.set(insecureHeaders.token, token)
        m.set(insecureHeaders.agent, agentId)
        return m
      },
    }
  }
  const joined = !existsSync(file('cert.pem'))
  if (joined) {
    if (!o.token) throw new SandstormError('invalid_argument', 'this agent has not joined yet: expected --token (from `sandstorm server`)')
    const joined = await join_(o.serverUrl, o.token)
    await writeFile(file('ca.pem'), joined.caPem, { mode: 0o600 })
    await writeFile(file('key.pem'), joined.keyPem, { mode: 0o600 })
    await writeFile(file('cert.pem'), joined.certPem, { mode: 0o600 })
  }
  // The agent's key proves it to the server: this user's, 0600, or refused.
  readSecretFile(file('key.pem'), "the agent's key", 100)
  const [ca, key, cert] = await Promise.all(['ca.pem', 'key.pem', 'cert.pem'].map((n) => readFile(file(n))))
  const agentId = /CN=([^\n,]+)/.exec(new X509Certificate(cert!).subject)?.[1] ?? ''
  return { agentId, joined, credentials: tlsCredentials(ca!, key!, cert!), channelOptions: tlsChannelOptions, metadata: () => new grpc.Metadata() }
}

/** Drops the identity kept in `dir` (a revoked one), so that the next load joins afresh. */
export async function forgetLinkIdentity(dir: string): Promise<void> {
  await Promise.all(['agent-id', 'cert.pem', 'key.pem', 'ca.pem'].map((n) => rm(join(dir, n), { force: true })))
}

/** Response metadata of Control (named in agent.proto): the heartbeat interval the server wants. */
export const heartbeatHeader = 'x-sandstorm-heartbeat-ms'

/** Trailing metadata of a Control refused for reconnecting too often (named in agent.proto): how long the server wants the agent to wait. */
export const retryAfterHeader = 'x-sandstorm-retry-after-ms'

/** The name sent in TLS (an IP address is not a valid server name) and checked in the server's certificate. */
const tlsChannelOptions: grpc.ChannelOptions = { ...linkChannelOptions, 'grpc.ssl_target_name_override': serverCommonName, 'grpc.default_authority': serverCommonName }

/** TLS to a server whose certificate chains to `ca` and names the server (the address is not checked: the CA is this fleet's own). */
function tlsCredentials(ca: Buffer, key: Buffer | null, cert: Buffer | null): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(ca, key, cert, {
    checkServerIdentity: (_host, peer) =>
      peer.subject?.CN === serverCommonName ? undefined : new Error(`the server's certificate names "${peer.subject?.CN}": expected ${serverCommonName}`),
  })
}

/** Pins the CA by the token's hash, then presents the token once for a certificate. */
async function join_(serverUrl: string, token: string): Promise<JoinReply> {
  const { caSha256, secret } = parseJoinToken(token)
  if (!caSha256) throw new SandstormError('invalid_argument', 'the token is for an --insecure server: start the agent with --insecure')
  const { host, port, target } = linkTarget(serverUrl)
  const caPem = await fetchPinnedCa(host, port, caSha256)
  const { Client } = loadAgentLink()
  const client = new Client(target, tlsCredentials(Buffer.from(caPem), null, null), tlsChannelOptions)
  try {
    return await new Promise<JoinReply>((resolve, reject) =>
      client.Join({ token: secret, hostname: hostname() }, { deadline: Date.now() + 30_000 }, (err: grpc.ServiceError | null, reply: JoinReply) =>
        err
          ? reject(new SandstormError(err.code === grpc.status.UNAUTHENTICATED ? 'unauthenticated' : 'unavailable', `the server refused to join this agent: ${err.details || err.message}`))
          : resolve(reply),
      ),
    )
  } finally {
    client.close()
  }
}

/** Reads the server's certificate chain without trusting it and returns the CA whose hash the token names. */
function fetchPinnedCa(host: string, port: number, caSha256: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, servername: serverCommonName, rejectUnauthorized: false, ALPNProtocols: ['h2'] })
    socket.setTimeout(10_000, () => socket.destroy(new Error('timed out')))
    socket.once('error', (err) => reject(new SandstormError('unavailable', `could not reach the server at ${host}:${port}: ${err.message}`)))
    socket.once('secureConnect', () => {
      let cert = socket.getPeerCertificate(true)
      const seen = new Set<string>()
      while (cert && !seen.has(cert.fingerprint256)) {
        seen.add(cert.fingerprint256)
        if (cert.fingerprint256.replace(/:/g, '').toLowerCase() === caSha256) {
          socket.destroy()
          return resolve(new X509Certificate(cert.raw).toString())
        }
        cert = cert.issuerCertificate
      }
      socket.destroy()
      reject(new SandstormError('unauthenticated', 'the server does not present the CA the token names: wrong server or wrong token'))
    })
  })
}
