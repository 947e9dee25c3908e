/**
 * The unmodified `e2b` SDK against a real Sandstorm: the parts of E2B's files API that envd 0.6.4
 * serves: removing a missing path, symlink targets, parents made for the writing user, file
 * metadata (xattrs in the sandbox), entries in watch events, and signed file URLs without an API
 * key or access token.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { describe, test } from 'node:test'
import { FileType, FilesystemEventType } from 'e2b'
import type { FilesystemEvent } from 'e2b'
import { envdVersion } from '../src/server/e2b/index.js'
import { e2bSuite } from './helpers/e2b-env.js'
import { skipReason } from './helpers/stack.js'

const skip = skipReason()

/** A request to the server as a plain client sends it: no API key, no access token, no E2B headers. */
function plain(url: string, init: { method?: string; body?: string | FormData; headers?: Record<string, string> } = {}): Promise<{ status: number; text: string }> {
  return fetch(url, init).then(async (res) => ({ status: res.status, text: await res.text() }))
}

/** One request with any Host (fetch will not set one). */
function withHost(url: string, host: string): Promise<{ status: number; text: string }> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, headers: { host } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('e2b SDK: files as envd 0.6.4 serves them', { skip: skip ?? false }, () => {
  const suite = e2bSuite({ sandbox: true })

  test('the create answer reports the envd version whose features are served', async () => {
    assert.equal(envdVersion, '0.6.4')
    assert.equal((await suite.sbx.getInfo()).envdVersion, envdVersion)
  })

  test('removing a path that is not there is not an error; other failures still are', async () => {
    await suite.sbx.files.remove('/home/user/never-was.txt')
    await suite.sbx.files.remove('/no/such/dir/at/all')
    await suite.sbx.files.write('/home/user/gone.txt', 'x')
    await suite.sbx.files.remove('/home/user/gone.txt')
    assert.equal(await suite.sbx.files.exists('/home/user/gone.txt'), false)
    await assert.rejects(suite.sbx.files.remove('/usr/bin/env'), /permission denied/i, 'the default user cannot remove root\'s files')
  })

  test('a symlink gives its absolute target, in getInfo and in listings, with its target\'s type', async () => {
    await suite.sbx.files.write('/home/user/links/target.txt', 'pointed at')
    await suite.sbx.files.makeDir('/home/user/links/dir')
    await suite.sbx.commands.run('cd /home/user/links && ln -s target.txt rel && ln -s ./dir dirlink && ln -s rel chain && ln -s nowhere dangling')
    const rel = await suite.sbx.files.getInfo('/home/user/links/rel')
    assert.equal(rel.name, 'rel')
    assert.equal(rel.symlinkTarget, '/home/user/links/target.txt')
    assert.equal(rel.type, FileType.FILE)
    assert.equal(rel.permissions, 'Lrwxrwxrwx')
    assert.equal((await suite.sbx.files.getInfo('/home/user/links/chain')).symlinkTarget, '/home/user/links/target.txt', 'a chain resolves to its end')
    const dangling = await suite.sbx.files.getInfo('/home/user/links/dangling')
    assert.equal(dangling.symlinkTarget, '/home/user/links/dangling', 'a link that does not resolve points at itself, as envd says')

    const listed = new Map((await suite.sbx.files.list('/home/user/links')).map((e) => [e.name, e]))
    assert.equal(listed.get('rel')?.symlinkTarget, '/home/user/links/target.txt')
    assert.equal(listed.get('dirlink')?.symlinkTarget, '/home/user/links/dir')
    assert.equal(listed.get('dirlink')?.type, FileType.DIR)
    assert.equal(listed.get('target.txt')?.symlinkTarget, undefined)
    assert.equal(listed.has('dangling'), false, 'an entry of no type is left out of listings by the SDK, as against envd')
  })

  test('a write makes missing parents and gives them to the writing user, for every upload the SDK makes', async () => {
    const owners = async (path: string) => (await suite.sbx.commands.run(`stat -c %U ${path}`, { user: 'root' })).stdout.trim()
    await suite.sbx.files.write('/home/user/p1/a/b/form.txt', 'multipart')
    await suite.sbx.files.write('/home/user/p2/a/b/octet.txt', 'octet-stream', { useOctetStream: true })
    await suite.sbx.files.write('/home/user/p3/a/b/gz.txt', 'gzip', { gzip: true })
    await suite.sbx.files.write([
      { path: '/home/user/p4/a/one.txt', data: 'one' },
      { path: '/home/user/p4/b/c/two.txt', data: 'two' },
    ])
    await suite.sbx.files.write('/tmp/as-root/a/b/root.txt', 'root', { user: 'root' })
    for (const dir of ['/home/user/p1', '/home/user/p1/a', '/home/user/p1/a/b', '/home/user/p2/a/b', '/home/user/p3/a/b', '/home/user/p4/a', '/home/user/p4/b/c']) {
      assert.equal(await owners(dir), 'user', dir)
    }
    assert.equal(await owners('/home/user/p2/a/b/octet.txt'), 'user')
    assert.equal(await owners('/tmp/as-root/a/b'), 'root')
    assert.equal(await suite.sbx.files.read('/home/user/p3/a/b/gz.txt'), 'gzip')
    assert.equal(await suite.sbx.files.read('/home/user/p4/b/c/two.txt'), 'two')
    // The user's own commands can add to what was made for them.
    await suite.sbx.commands.run('touch /home/user/p1/a/b/mine && mkdir /home/user/p2/a/b/sub')
  })

  test('file metadata: written with the file, read back by write, getInfo, list and rename, replaced on overwrite', async () => {
    const metadata = { author: 'mish', purpose: 'upload' }
    const info = await suite.sbx.files.write('/home/user/meta/form.txt', 'with metadata', { metadata })
    assert.deepEqual(info.metadata, metadata)
    assert.deepEqual((await suite.sbx.files.getInfo('/home/user/meta/form.txt')).metadata, metadata)
    const octet = await suite.sbx.files.write('/home/user/meta/octet.txt', 'octet', { metadata, useOctetStream: true })
    assert.deepEqual(octet.metadata, metadata)
    const many = await suite.sbx.files.write([{ path: '/home/user/meta/m1.txt', data: '1' }, { path: '/home/user/meta/m2.txt', data: '2' }], { metadata: { source: 'suite' } })
    assert.deepEqual(many.map((i) => i.metadata), [{ source: 'suite' }, { source: 'suite' }])

    const listed = new Map((await suite.sbx.files.list('/home/user/meta')).map((e) => [e.name, e.metadata]))
    assert.deepEqual(listed.get('m2.txt'), { source: 'suite' })
    assert.deepEqual(listed.get('octet.txt'), metadata)
    assert.deepEqual((await suite.sbx.files.rename('/home/user/meta/m1.txt', '/home/user/meta/renamed.txt')).metadata, { source: 'suite' })

    // Kept in the sandbox, as user xattrs under user.e2b.: the sandbox's own tools see them.
    const attrs = await suite.sbx.commands.run(`python3 -c "import os; print(sorted(os.listxattr('/home/user/meta/form.txt')))"`)
    assert.equal(attrs.stdout.trim(), "['user.e2b.author', 'user.e2b.purpose']")
    await suite.sbx.commands.run(`python3 -c "import os; os.setxattr('/home/user/meta/octet.txt', 'user.e2b.stage', b'set inside')"`)
    assert.deepEqual((await suite.sbx.files.getInfo('/home/user/meta/octet.txt')).metadata, { ...metadata, stage: 'set inside' })

    const overwritten = await suite.sbx.files.write('/home/user/meta/form.txt', 'no metadata now')
    assert.equal(overwritten.metadata, undefined)
    assert.equal((await suite.sbx.files.getInfo('/home/user/meta/form.txt')).metadata, undefined)
  })

  test('metadata out of envd\'s bounds is a 400 naming the key, and writes nothing', async () => {
    const url = await suite.sbx.uploadUrl('/home/user/meta/refused.txt')
    const big = await plain(url, { method: 'POST', body: 'x', headers: { 'content-type': 'application/octet-stream', 'x-metadata-big': 'v'.repeat(5000) } })
    assert.equal(big.status, 400)
    assert.match(JSON.parse(big.text).message, /metadata: expected at most 4096 bytes/)
    const odd = await plain(url, { method: 'POST', body: 'x', headers: { 'content-type': 'application/octet-stream', 'x-metadata-k': 'caf\u00e9' } })
    assert.equal(odd.status, 400)
    assert.match(JSON.parse(odd.text).message, /metadata value for key "k"/)
    assert.equal(await suite.sbx.files.exists('/home/user/meta/refused.txt'), false)
  })

  test('watchDir with includeEntry: create and write events carry the entry, a remove does not', async () => {
    await suite.sbx.files.makeDir('/home/user/watched-entries')
    const events: FilesystemEvent[] = []
    let wake: (() => void) | undefined
    const handle = await suite.sbx.files.watchDir(
      '/home/user/watched-entries',
      (event) => {
        events.push(event)
        wake?.()
      },
      { includeEntry: true, allowNetworkMounts: true },
    )
    const until = async (pred: () => boolean): Promise<void> => {
      while (!pred()) await new Promise<void>((resolve) => (wake = resolve))
    }
    try {
      await suite.sbx.files.write('/home/user/watched-entries/seen.txt', 'watched', { metadata: { tag: 'w' } })
      await suite.sbx.files.remove('/home/user/watched-entries/seen.txt')
      await until(() => events.some((e) => e.type === FilesystemEventType.REMOVE))
    } finally {
      await handle.stop()
    }
    const created = events.find((e) => e.type === FilesystemEventType.CREATE)
    assert.equal(created?.entry?.path, '/home/user/watched-entries/seen.txt')
    assert.equal(created?.entry?.type, FileType.FILE)
    assert.equal(created?.entry?.owner, 'user')
    const written = events.filter((e) => e.type === FilesystemEventType.WRITE && e.entry)
    assert.ok(written.length > 0, 'a write event carries its entry')
    assert.equal(events.find((e) => e.type === FilesystemEventType.REMOVE)?.entry, undefined)
  })

  test('signed URLs: download and upload with no API key and no token; expired, tampered and unsigned ones are refused', async () => {
    await suite.sbx.files.write('/home/user/signed/hello.txt', 'hello world')
    const download = await suite.sbx.downloadUrl('/home/user/signed/hello.txt', { useSignatureExpiration: 60_000 })
    assert.match(download, /signature=v1_/)
    assert.match(download, /signature_expiration=\d+/)
    assert.deepEqual(await plain(download), { status: 200, text: 'hello world' })
    const forever = await suite.sbx.downloadUrl('/home/user/signed/hello.txt')
    assert.doesNotMatch(forever, /signature_expiration/)
    assert.equal((await plain(forever)).text, 'hello world')
    // As the SDK builds it without E2B_SANDBOX_URL: the Host names the sandbox.
    assert.equal((await withHost(download, `49983-${suite.sbx.sandboxId}.${suite.stack.server.domain}`)).text, 'hello world')

    const upload = await suite.sbx.uploadUrl('/home/user/signed/up.txt', { useSignatureExpiration: 60_000 })
    const form = new FormData()
    form.append('file', new Blob(['uploaded']), 'up.txt')
    const posted = await plain(upload, { method: 'POST', body: form })
    assert.equal(posted.status, 200)
    assert.deepEqual(JSON.parse(posted.text), [{ name: 'up.txt', path: '/home/user/signed/up.txt', type: 'file' }])
    assert.equal(await suite.sbx.files.read('/home/user/signed/up.txt'), 'uploaded')
    assert.equal((await suite.sbx.files.getInfo('/home/user/signed/up.txt')).owner, 'user')

    const refused = (r: { status: number; text: string }, message: string) => {
      assert.equal(r.status, 401, r.text)
      assert.deepEqual(JSON.parse(r.text), { code: 401, message })
    }
    refused(await plain(await suite.sbx.downloadUrl('/home/user/signed/hello.txt', { useSignatureExpiration: -10_000 })), 'signature is already expired')
    refused(await plain(await suite.sbx.uploadUrl('/home/user/signed/late.txt', { useSignatureExpiration: -10_000 }), { method: 'POST', body: form }), 'signature is already expired')
    const tamper = (name: string, value: string) => {
      const u = new URL(download)
      u.searchParams.set(name, value)
      return u.toString()
    }
    refused(await plain(tamper('path', '/etc/shadow')), 'invalid signature')
    refused(await plain(tamper('username', 'root')), 'invalid signature')
    refused(await plain(tamper('signature_expiration', String(Math.floor(Date.now() / 1000) + 3600))), 'invalid signature')
    refused(await plain(tamper('signature', 'v1_' + 'A'.repeat(43))), 'invalid signature')
    refused(await plain(download, { method: 'POST', body: form }), 'invalid signature')
    const unsigned = new URL(download)
    unsigned.searchParams.delete('signature')
    unsigned.searchParams.delete('signature_expiration')
    assert.equal((await plain(unsigned.toString())).status, 401)
    // An upload URL pointed at another path by hand writes nothing there, nor does an expired one.
    const retargeted = new URL(upload)
    retargeted.searchParams.set('path', '/etc/shadow-copy')
    refused(await plain(retargeted.toString(), { method: 'POST', body: form }), 'invalid signature')
    assert.equal(await suite.sbx.files.exists('/etc/shadow-copy'), false)
    assert.equal(await suite.sbx.files.exists('/home/user/signed/late.txt'), false)
    // A URL signed for the default user stays the default user's, whatever Authorization comes with it.
    const relative = await suite.sbx.uploadUrl('as-whom.txt', { useSignatureExpiration: 60_000 })
    assert.equal((await plain(relative, { method: 'POST', body: form, headers: { authorization: `Basic ${Buffer.from('root:').toString('base64')}` } })).status, 200)
    assert.equal(await suite.sbx.files.exists('/root/as-whom.txt', { user: 'root' }), false)
    assert.equal((await suite.sbx.files.getInfo('/home/user/as-whom.txt')).owner, 'user')
  })
})
