import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { parseImageReference } from '../reference.js'
import { checkFetchTarget } from './fetch-targets.js'
import { createRegistryClient } from './registry-client.js'

/** An HTTP server on loopback with this handler; its base URL. */
async function serve(handler: RequestListener): Promise<{ url: string; server: Server }> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

const credentials = { username: 'builder', password: 'hunter2' }

/** A client for `team/app:1` of the registry at `url`, listed as insecure: the operator's local registry. */
function localClient(url: string, options: { credentials?: typeof credentials } = {}) {
  const host = url.slice('http://'.length)
  return createRegistryClient(parseImageReference(`${host}/team/app:1`), { ...options, attempts: 1, insecureRegistries: [host] })
}

describe('the registry client answering challenges', () => {
  const servers: Server[] = []
  after(() => servers.forEach((s) => s.close()))

  it('answers only the registry\'s own 401: a redirect target\'s challenge never gets the credentials', async () => {
    const seen: IncomingHttpHeaders[] = []
    const realm = await serve((req, res) => {
      seen.push(req.headers)
      res.end(JSON.stringify({ token: 'stolen' }))
    })
    const storage = await serve((_req, res) => res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm.url}/token"` }).end())
    const registry = await serve((req, res) => {
      if (req.url?.startsWith('/v2/team/app/blobs/')) res.writeHead(307, { location: `${storage.url}/blob` }).end()
      else res.writeHead(404).end()
    })
    servers.push(realm.server, storage.server, registry.server)
    const client = localClient(registry.url, { credentials })
    await assert.rejects(client.get(`/v2/team/app/blobs/sha256:${'0'.repeat(64)}`, {}, undefined), (err: unknown) => err instanceof SandstormError && /where it redirected .* answered 401/.test(err.message))
    assert.deepEqual(seen, [], 'the redirect target\'s realm was asked for a token')
  })

  it('still takes the registry\'s own bearer challenge, with the credentials going to its realm', async () => {
    const seen: (string | undefined)[] = []
    const realm = await serve((req, res) => {
      seen.push(req.headers.authorization)
      res.end(JSON.stringify({ token: 'fine' }))
    })
    const registry = await serve((req, res) => {
      if (req.headers.authorization === 'Bearer fine') res.end('manifest')
      else res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm.url}/token",service="test"` }).end()
    })
    servers.push(realm.server, registry.server)
    const client = localClient(registry.url, { credentials })
    assert.equal(await (await client.get('/v2/team/app/manifests/1', {}, undefined)).text(), 'manifest')
    assert.deepEqual(seen, [`Basic ${Buffer.from('builder:hunter2').toString('base64')}`])
  })
})

describe('where a registry may send the server', () => {
  const servers: Server[] = []
  after(() => servers.forEach((s) => s.close()))

  // Each refusal comes before any connection: nothing is ever sent to a link-local address here.
  it('refuses a redirect or a token realm on a link-local address, and follows redirects it may, without the credentials to another origin', async () => {
    const storageSeen: (string | undefined)[] = []
    const storage = await serve((req, res) => {
      storageSeen.push(req.headers.authorization)
      res.end('blob')
    })
    const registry = await serve((req, res) => {
      if (req.url === '/v2/team/app/blobs/metadata') res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end()
      else if (req.url === '/v2/team/app/blobs/storage') res.writeHead(307, { location: `${storage.url.replace('127.0.0.1', 'localhost')}/blob` }).end()
      else if (req.url === '/v2/team/app/manifests/1') res.writeHead(401, { 'www-authenticate': 'Bearer realm="http://[fe80::1]/token"' }).end()
      else res.writeHead(404).end()
    })
    servers.push(storage.server, registry.server)
    const client = localClient(registry.url)
    await assert.rejects(client.get('/v2/team/app/blobs/metadata', {}, undefined), (err: unknown) => err instanceof SandstormError && err.code === 'permission_denied' && /169\.254\.169\.254 is linkLocal/.test(err.message))
    await assert.rejects(client.get('/v2/team/app/manifests/1', {}, undefined), (err: unknown) => err instanceof SandstormError && /token realm .* fe80::1 is linkLocal/.test(err.message))
    // A listed loopback registry's redirect to loopback is followed; the Authorization stays behind on another origin.
    assert.equal(await (await client.get('/v2/team/app/blobs/storage', { Authorization: 'Bearer mine' }, undefined)).text(), 'blob')
    assert.deepEqual(storageSeen, [undefined])
  })

  it('refuses loopback to a registry that is not on loopback', async () => {
    await assert.rejects(checkFetchTarget(new URL('http://localhost:5000/x'), false, 'a redirect to'), (err: unknown) => err instanceof SandstormError && /is loopback/.test(err.message))
    await assert.rejects(checkFetchTarget(new URL('http://[::ffff:127.0.0.1]/x'), false, 'a redirect to'), /is loopback/)
    await checkFetchTarget(new URL('http://10.1.2.3/x'), false, 'a redirect to')
  })

  // Addresses only: nothing is resolved or sent.
  it('refuses the cloud metadata services outside link-local: 100.100.100.200 and fd00:ec2::254', async () => {
    const refused = (err: unknown) => err instanceof SandstormError && err.code === 'permission_denied' && /is a cloud metadata service/.test(err.message)
    for (const url of ['http://100.100.100.200/latest/meta-data/', 'http://[fd00:ec2::254]/latest/meta-data/', 'http://[fd00:ec2:0::254]/', 'http://[::ffff:100.100.100.200]/']) {
      await assert.rejects(checkFetchTarget(new URL(url), true, 'a redirect to'), refused, url)
    }
    // Their neighbours stay open (CGNAT and unique-local ranges hold company registries).
    await checkFetchTarget(new URL('http://100.100.100.201/x'), false, 'a redirect to')
    await checkFetchTarget(new URL('http://[fd00:ec2::253]/x'), false, 'a redirect to')
  })
})

describe('a registry on this host', () => {
  const servers: Server[] = []
  after(() => servers.forEach((s) => s.close()))

  it('is refused before any request unless the operator lists it as insecure, and then it is asked', async () => {
    let requests = 0
    const registry = await serve((_req, res) => {
      requests++
      res.writeHead(404).end()
    })
    servers.push(registry.server)
    const host = registry.url.slice('http://'.length)
    const port = host.split(':')[1]!
    for (const reference of [`${host}/x`, `localhost:${port}/x`, `127.0.0.2:${port}/team/app:1`]) {
      const client = createRegistryClient(parseImageReference(reference), { attempts: 1, insecureRegistries: ['127.0.0.1:1', `other.example:${port}`] })
      await assert.rejects(client.get('/v2/x/manifests/latest', {}, undefined), (err: unknown) => {
        assert.ok(err instanceof SandstormError, String(err))
        assert.equal(err.code, 'permission_denied')
        const registryName = reference.slice(0, reference.indexOf('/'))
        assert.match(err.message, new RegExp(`^registry ${registryName.replace(/\./g, '\\.')}: refused, [0-9a-f:.]+ is loopback: expected a registry that is not on this host .* --insecure-registry ${registryName.replace(/\./g, '\\.')}$`))
        return true
      })
    }
    assert.equal(requests, 0, 'the registry was asked')
    const listed = localClient(registry.url)
    assert.equal((await listed.get('/v2/team/app/manifests/1', {}, undefined)).status, 404)
    assert.equal(requests, 1)
  })
})
