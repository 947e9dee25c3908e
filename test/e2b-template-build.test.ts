/**
 * The unmodified e2b SDK's template builder against a real stack: `Template()...` built with
 * `Template.build`, then sandboxes of it; a failing step; bad names; hostile uploads. Built
 * templates land in a templates dir of this test's own (the shared debian linked in).
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { gzipSync } from 'node:zlib'
import { BuildError, Sandbox, Template, waitForFile } from 'e2b'
import type { LogEntry } from 'e2b'
import { pack } from 'tar-stream'
import { Sandbox as SandstormSandbox } from '@sandstorm/sdk'
import { useStackForE2b } from './helpers/e2b-env.js'
import { pushTestImage } from './helpers/oci-images.js'
import { registryToolsMissing, startRegistry, type TestRegistry } from './helpers/registry.js'
import { scratchTemplatesDir, skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? registryToolsMissing()

/** A tar.gz of these entries, made here (the SDK's own tars are well-formed). */
async function tarGz(entries: { name: string; content: string }[]): Promise<Buffer> {
  const p = pack()
  const chunks: Buffer[] = []
  p.on('data', (chunk: unknown) => {
    chunks.push(chunk as Buffer)
  })
  const ended = once(p, 'end')
  for (const e of entries) p.entry({ name: e.name, mode: 0o644 }, e.content)
  p.finalize()
  await ended
  return gzipSync(Buffer.concat(chunks))
}

describe('e2b SDK template builder', { skip: skip ?? false }, () => {
  const maxFileBytes = 1024 * 1024
  let stack: Stack
  let registry: TestRegistry
  let image: string
  let work: string
  let templates: { dir: string; remove(): Promise<void> }
  let context: string

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sandstorm-test-e2b-template-'))
    context = join(work, 'context')
    templates = await scratchTemplatesDir()
    await mkdir(context, { recursive: true })
    await writeFile(join(context, 'hello.txt'), 'hello from the build context\n')
    await mkdir(join(context, 'site'))
    await writeFile(join(context, 'site', 'index.html'), '<p>site</p>\n')
    registry = await startRegistry({ auth: 'htpasswd' })
    image = (await pushTestImage(registry, 'team/app:v1', { files: { 'srv/app.txt': 'from the image\n' }, env: ['FROM_IMAGE=yes'] })).reference
    stack = await startStack({ templatesDir: templates.dir, maxFileBytes, insecureRegistries: [registry.host] })
    useStackForE2b(stack)
  })
  after(async () => {
    await stack?.close()
    await registry?.stop()
    // The templates built here go with their dir.
    await templates?.remove()
    await rm(work, { recursive: true, force: true })
  })

  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${stack.server.url}${path}`, { ...init, headers: { 'X-API-Key': process.env.E2B_API_KEY!, 'content-type': 'application/json', ...init.headers } })
  const buildsDir = () => join(stack.dataDir, 'e2b-template-builds')

  it('builds a template from runCmd, copy, setEnvs and setWorkdir, and sandboxes of it see them', async () => {
    const template = Template({ fileContextPath: context })
      .fromTemplate('debian')
      .runCmd('echo built-by-run > /built.txt')
      .copy('hello.txt', '/app/hello.txt')
      .copy('site', '/srv/site/')
      .setEnvs({ GREETING: 'hello there', OTHER: 'x"y' })
      .setWorkdir('/app')
      .setStartCmd('echo "started in $(pwd)" > /tmp/started; sleep infinity', waitForFile('/tmp/started'))
    const logs: LogEntry[] = []
    const info = await Template.build(template, { alias: 'sdk-built', onBuildLogs: (entry) => logs.push(entry) })
    assert.equal(info.name, 'sdk-built')
    const text = logs.map((l) => l.message)
    assert.ok(text.some((m) => /Uploaded 'hello\.txt'/.test(m)), `the upload is logged: ${text.join(' | ')}`)
    assert.ok(text.some((m) => /^step 1 \(RUN echo built-by-run/.test(m)), `the RUN step is logged by its number: ${text.join(' | ')}`)
    assert.ok(!(await readdir(buildsDir())).includes(info.buildId), 'the build left no uploads behind')
    assert.equal(await Template.exists('sdk-built'), true)
    assert.equal(await Template.exists('never-built'), false)

    const sbx = await Sandbox.create('sdk-built')
    try {
      // The start command and commands run in the WORKDIR, commands as E2B's default user.
      const run = await sbx.commands.run('cat /built.txt hello.txt /srv/site/index.html /tmp/started; echo "$GREETING|$OTHER|$(pwd)|$(id -un)|$USER"')
      assert.equal(run.stdout, 'built-by-run\nhello from the build context\n<p>site</p>\nstarted in /app\nhello there|x"y|/app|user|user\n')
    } finally {
      await sbx.kill()
    }
  })

  it('builds a template of an image from a registry that wants a login (fromImage with credentials)', async () => {
    const [username, password] = registry.creds!.split(':') as [string, string]
    await assert.rejects(Template.build(Template().fromImage(image, { username, password: 'wrong' }), 'sdk-no-login'), BuildError)
    await Template.build(Template().fromImage(image, { username, password }), 'sdk-image')
    const sbx = await Sandbox.create('sdk-image')
    try {
      // The image is busybox alone: E2B's commands run /bin/bash and its file calls perl, so the
      // sandbox is read through Sandstorm's own API, whose commands run /bin/sh.
      const own = await SandstormSandbox.connect(sbx.sandboxId, stack.conn)
      const run = await own.commands.run('cat /srv/app.txt; echo "$FROM_IMAGE"')
      assert.equal(run.stdout, 'from the image\nyes\n')
    } finally {
      await sbx.kill()
    }
  })

  it('fails the build at a failing runCmd, and the SDK names that step', async () => {
    const template = Template({ fileContextPath: context }).fromTemplate('debian').runCmd('true').runCmd('echo about to fail; exit 3')
    const logs: string[] = []
    await assert.rejects(Template.build(template, { alias: 'sdk-fails', onBuildLogs: (l) => logs.push(l.message) }), (err: unknown) => {
      assert.ok(err instanceof BuildError, `a BuildError, got ${String(err)}`)
      assert.match(err.message, /^step 2 \(RUN echo about to fail; exit 3\) failed with exit code 3: about to fail$/)
      return true
    })
    assert.ok(logs.includes('about to fail'), `the step's output is in the log: ${logs.join(' | ')}`)
    assert.equal(await Template.exists('sdk-fails'), false)
    assert.deepEqual(await readdir(buildsDir()), [])
  })

  it('refuses a name that is no Sandstorm template name, and tags, with 400 naming the field', async () => {
    const template = Template().fromTemplate('debian').runCmd('true')
    await assert.rejects(Template.build(template, { alias: 'Not A Name!' }), (err: unknown) => {
      assert.ok(err instanceof BuildError)
      assert.match(err.message, /^400: name: expected a template name/)
      return true
    })
    await assert.rejects(Template.build(template, 'sdk-tagged:v1'), /^BuildError: 400: tags: expected none/)
    const bad = await api('/v3/templates', { method: 'POST', body: JSON.stringify({ name: 'ok-name', memoryMB: 'lots' }) })
    assert.equal(bad.status, 400)
    assert.match(((await bad.json()) as { message: string }).message, /^memoryMB: expected an integer from \d+ to \d+, got "lots"$/)
  })

  it('refuses a bad step at the start with 400 naming it, and takes no upload past the file limit or without the API key', async () => {
    const requested = (await (await api('/v3/templates', { method: 'POST', body: JSON.stringify({ name: 'sdk-hostile' }) })).json()) as { buildID: string }
    const hash = 'b'.repeat(64)
    const link = (await (await api(`/templates/sdk-hostile/files/${hash}`)).json()) as { present: boolean; url: string; headers: Record<string, string> }
    assert.equal(link.present, false)
    assert.match(link.url, new RegExp(`^${stack.server.url}/templates/sdk-hostile/uploads/${hash}/files$`))

    const unauthenticated = await fetch(link.url, { method: 'PUT', body: 'x' })
    assert.equal(unauthenticated.status, 401)
    const tooLarge = await fetch(link.url, { method: 'PUT', headers: link.headers, body: new Uint8Array(maxFileBytes + 1) })
    assert.equal(tooLarge.status, 413)
    const bad = await api(`/templates/sdk-hostile/files/..%2F..%2Fetc`)
    assert.equal(bad.status, 400)

    const start = (body: object) => api(`/v2/templates/sdk-hostile/builds/${requested.buildID}`, { method: 'POST', body: JSON.stringify(body) })
    const newline = await start({ fromTemplate: 'debian', steps: [{ type: 'WORKDIR', args: ['/a\nRUN touch /pwned'] }] })
    assert.equal(newline.status, 400)
    assert.match(((await newline.json()) as { message: string }).message, /^steps\[0\]\.args\[0\]: expected a directory/)
    const notUploaded = await start({ fromTemplate: 'debian', steps: [{ type: 'COPY', args: ['x', '/x'], filesHash: hash }] })
    assert.equal(notUploaded.status, 409)
    assert.match(((await notUploaded.json()) as { message: string }).message, new RegExp(`^filesHash ${hash}: expected its files uploaded first`))
  })

  it('fails a build whose uploaded files would land outside their directory, leaving nothing there', async () => {
    const requested = (await (await api('/v3/templates', { method: 'POST', body: JSON.stringify({ name: 'sdk-escape' }) })).json()) as { buildID: string }
    const hash = 'c'.repeat(64)
    const link = (await (await api(`/templates/sdk-escape/files/${hash}`)).json()) as { url: string; headers: Record<string, string> }
    const put = await fetch(link.url, { method: 'PUT', headers: link.headers, body: new Uint8Array(await tarGz([{ name: '../../../escaped.txt', content: 'out' }])) })
    assert.equal(put.status, 200)
    const again = (await (await api(`/templates/sdk-escape/files/${hash}`)).json()) as { present: boolean }
    assert.equal(again.present, true)
    const started = await api(`/v2/templates/sdk-escape/builds/${requested.buildID}`, {
      method: 'POST',
      body: JSON.stringify({ fromTemplate: 'debian', steps: [{ type: 'COPY', args: ['escaped.txt', '/x', '', ''], filesHash: hash }] }),
    })
    assert.equal(started.status, 202)
    // The build's end has no event but its status, which the SDK polls too.
    const ended = await until('the build to end', async () => {
      const status = await Template.getBuildStatus({ templateId: 'sdk-escape', buildId: requested.buildID })
      return status.status !== 'building' && status
    })
    assert.equal(ended.status, 'error')
    assert.match(ended.reason?.message ?? '', /escaped\.txt|\.\./)
    assert.ok(!(await readdir(buildsDir())).includes(requested.buildID), 'the build left no uploads behind')
    assert.deepEqual((await readdir(stack.dataDir)).filter((n) => n.includes('escaped')), [])
  })
})
