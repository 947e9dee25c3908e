/**
 * A real registry for tests: Debian's docker-registry (the CNCF distribution server) on 127.0.0.1
 * with a port of its own and a temp storage dir; optionally behind htpasswd or token auth (a token
 * server in this process signs RS256 JWTs with a key whose cert the registry trusts).
 */
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process'
import { createHash, createPrivateKey, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Options of a test registry. */
export interface TestRegistryOptions {
  /** Who may pull and push: none (anonymous), htpasswd (basic auth) or a bearer-token server. @default 'none' */
  auth?: 'none' | 'htpasswd' | 'token'
  /** Users and passwords that auth accepts. @default { tester: 'secret-pass' } */
  users?: Record<string, string>
}

/** A running test registry. */
export interface TestRegistry {
  /** `127.0.0.1:<port>`: the registry part of references to it. */
  readonly host: string
  /** The users auth accepts (empty without auth). */
  readonly users: Record<string, string>
  /** One user and password, `user:password`, for tools (skopeo's `--dest-creds`); undefined without auth. */
  readonly creds?: string
  /** The file a blob is stored in (to tamper with it in tests). */
  blobPath(digest: string): string
  /** The token server's requests, `scope` by scope (token auth only). */
  readonly tokenRequests: string[]
  /** Kills the registry and removes its dirs. Safe to call twice. */
  stop(): Promise<void>
}

const service = 'sandstorm-test-registry'
const issuer = 'sandstorm-test-issuer'

/** Starts a docker-registry on 127.0.0.1 with a free port, storage in a temp dir. */
export async function startRegistry(options: TestRegistryOptions = {}): Promise<TestRegistry> {
  const auth = options.auth ?? 'none'
  const users = auth === 'none' ? {} : (options.users ?? { tester: 'secret-pass' })
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-test-registry-'))
  const storage = join(dir, 'storage')
  const tokenRequests: string[] = []
  let tokenServer: Server | undefined
  let child: ChildProcess | undefined
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }
    if (tokenServer) await new Promise<void>((resolve) => tokenServer!.close(() => resolve()))
    await rm(dir, { recursive: true, force: true })
  }
  try {
    let authYaml = ''
    if (auth === 'htpasswd') {
      const lines: string[] = []
      for (const [user, password] of Object.entries(users)) lines.push((await run('htpasswd', ['-Bbn', user, password])).stdout.trim())
      await writeFile(join(dir, 'htpasswd'), `${lines.join('\n')}\n`)
      authYaml = `auth:\n  htpasswd:\n    realm: ${service}\n    path: ${join(dir, 'htpasswd')}\n`
    } else if (auth === 'token') {
      await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=sandstorm-test-token-issuer', '-keyout', join(dir, 'token.key'), '-out', join(dir, 'token.crt')])
      const key = createPrivateKey(await readFile(join(dir, 'token.key')))
      const certDer = new X509Certificate(await readFile(join(dir, 'token.crt'))).raw.toString('base64')
      tokenServer = createTokenServer(users, key, certDer, tokenRequests)
      tokenServer.listen(0, '127.0.0.1')
      await once(tokenServer, 'listening')
      const realm = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token`
      authYaml = `auth:\n  token:\n    realm: ${realm}\n    service: ${service}\n    issuer: ${issuer}\n    rootcertbundle: ${join(dir, 'token.crt')}\n`
    }
    const config = [
      'version: 0.1',
      'log:',
      '  level: info',
      '  formatter: text',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${storage}`,
      '  delete:',
      '    enabled: true',
      'http:',
      '  addr: 127.0.0.1:0',
      `  secret: ${randomBytes(16).toString('hex')}`,
      authYaml,
    ].join('\n')
    await writeFile(join(dir, 'config.yml'), config)
    child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] })
    const port = await listeningPort(child)
    const host = `127.0.0.1:${port}`
    const [first] = Object.entries(users)
    return {
      host,
      users,
      creds: first ? `${first[0]}:${first[1]}` : undefined,
      tokenRequests,
      blobPath: (digest) => {
        const hex = digest.replace(/^sha256:/, '')
        return join(storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data')
      },
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

// The registry logs "listening on 127.0.0.1:<port>" once it accepts connections.
async function listeningPort(child: ChildProcess): Promise<number> {
  let log = ''
  return new Promise<number>((resolve, reject) => {
    const onData = (data: Buffer): void => {
      log += data.toString()
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(log)
      if (match) {
        child.stderr!.off('data', onData)
        child.stdout!.off('data', onData)
        child.stderr!.resume()
        child.stdout!.resume()
        resolve(Number(match[1]))
      }
    }
    child.stderr!.on('data', onData)
    child.stdout!.on('data', onData)
    child.once('exit', (code) => reject(new Error(`docker-registry exited (${code}) before listening: ${log.slice(-2000)}`)))
    child.once('error', reject)
  })
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url')
}

// A token server as distribution's token auth expects: Basic auth in, a signed JWT with the
// granted access out; anonymous callers get a token that grants nothing.
function createTokenServer(users: Record<string, string>, key: KeyObject, certDer: string, requests: string[]): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token')
    if (url.pathname !== '/token') {
      res.writeHead(404).end()
      return
    }
    const scopes = url.searchParams.getAll('scope')
    requests.push(scopes.join(' '))
    const header = req.headers.authorization ?? ''
    let user: string | undefined
    if (header.startsWith('Basic ')) {
      const plain = Buffer.from(header.slice(6), 'base64').toString()
      const colon = plain.indexOf(':')
      const name = plain.slice(0, colon)
      if (colon < 0 || users[name] === undefined || users[name] !== plain.slice(colon + 1)) {
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }))
        return
      }
      user = name
    }
    const access = user
      ? scopes.flatMap((scope) => {
          const [type, ...rest] = scope.split(':')
          const actions = rest.pop() ?? ''
          return type === 'repository' ? [{ type, name: rest.join(':'), actions: actions.split(',').filter((a) => a === 'pull' || a === 'push') }] : []
        })
      : []
    const now = Math.floor(Date.now() / 1000)
    const head = { alg: 'RS256', typ: 'JWT', x5c: [certDer] }
    const claims = { iss: issuer, sub: user ?? '', aud: url.searchParams.get('service') ?? service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access }
    const payload = `${base64url(JSON.stringify(head))}.${base64url(JSON.stringify(claims))}`
    const token = `${payload}.${base64url(sign('sha256', Buffer.from(payload), key))}`
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300 }))
  })
}

/** The sha256 digest of `bytes` as `sha256:<hex>`. */
export function sha256Of(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

/** Why registry tests cannot run here (a tool they drive is missing), or undefined when they can. */
export function registryToolsMissing(): string | undefined {
  const missing = ['docker-registry', 'skopeo', 'umoci', 'htpasswd', 'openssl', 'zstd'].filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
  return missing.length > 0 ? `missing ${missing.join(', ')} (scripts/setup.sh installs them)` : undefined
}
