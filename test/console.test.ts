/**
 * The web console at /ui in a real browser: Debian's headless Chromium driven over the DevTools
 * protocol (puppeteer-core, no browser download), against a real server, agent and runc. Each page
 * is used as a user would (sign-in, create, labels, kill, sparklines, terminal, files, snapshots,
 * a template build, pools, agents) and checked through the API; screenshots go to
 * test-output/console/, and with SANDSTORM_UPDATE_SCREENSHOT=1 the README's docs/console.png.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { ResultPromise } from 'execa'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { deletePool, listPools, listSnapshots, Sandbox } from '@sandstorm/sdk'
import { startAgentProcess, startServerProcess, type ServerProcess, stopFleetProcesses } from './helpers/fleet-processes.js'
import { scratchTemplatesDir, skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

declare global {
  interface Window {
    /** The console's open terminal (src/ui/terminal-pane.tsx exposes it for these tests). */
    __sandstormTerm?: { rows: number; cols: number; buffer: { active: { length: number; getLine(i: number): { translateToString(trim: boolean): string } | undefined } } }
  }
}

const chromium = '/usr/bin/chromium'
const repo = fileURLToPath(new URL('../../', import.meta.url))
const uiBuilt = existsSync(join(repo, 'dist/ui/index.html'))
const skip =
  skipReason() ??
  (!existsSync(chromium) ? `no ${chromium}: scripts/setup.sh installs Debian's chromium` : null) ??
  (!uiBuilt ? 'the console is not built (dist/ui): run npm run build' : null) ??
  false
const shotsDir = join(repo, 'test-output/console')

/**
 * Chromium's flags. The first five keep it off the network (nothing but loopback may be reached
 * from tests); --no-sandbox because tests run as root, where Chromium's own sandbox cannot start.
 */
const chromiumArgs = [
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--disable-domain-reliability',
  '--no-pings',
  '--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication',
  '--disable-gpu',
  '--font-render-hinting=none',
  ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
]

/** The lines of the open terminal's buffer, read from the instance the console exposes for tests. */
const terminalText = (page: Page): Promise<string> =>
  page.evaluate(() => {
    const term = window.__sandstormTerm
    if (!term) return ''
    const buffer = term.buffer.active
    const lines: string[] = []
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i)?.translateToString(true) ?? '')
    return lines.join('\n')
  })

/** Pids and command lines of every process in the sandbox, read from /proc through the API. */
async function processesIn(sb: Sandbox, conn: Stack['conn']): Promise<{ pid: number; cmd: string }[]> {
  const script = 'for p in /proc/[0-9]*; do printf "%s %s\\n" "${p#/proc/}" "$(tr "\\000" " " < "$p/cmdline" 2>/dev/null)"; done'
  const r = await sb.commands.run(script, { ...conn })
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => ({ pid: Number(line.slice(0, line.indexOf(' '))), cmd: line.slice(line.indexOf(' ') + 1).trim() }))
}

/** Terminals open in the sandbox: the numbered entries of /dev/pts. */
async function ptysIn(sb: Sandbox, conn: Stack['conn']): Promise<string[]> {
  const r = await sb.commands.run('ls /dev/pts', { ...conn })
  return r.stdout.split(/\s+/).filter((n) => /^[0-9]+$/.test(n))
}

/** A raw GET, path sent exactly as given (fetch would resolve the dots). */
function rawGet(url: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path, method: 'GET', headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

describe('the web console in Chromium', { skip }, () => {
  let stack: Stack
  let templates: { dir: string; remove(): Promise<void> }
  let browser: Browser
  let page: Page
  let downloads: string
  let sandboxId = ''
  let snapshotId = ''
  /** Uncaught errors of the page and Content-Security-Policy refusals, over the whole run. */
  const pageErrors: string[] = []

  const shot = async (name: string, on: Page = page): Promise<void> => {
    await on.screenshot({ path: join(shotsDir, `${name}.png`) as `${string}.png` })
  }
  const gotoUi = async (path: string): Promise<void> => {
    await page.goto(`${stack.server.url}/ui${path}`, { waitUntil: 'domcontentloaded' })
  }
  const textOf = (selector: string): Promise<string> => page.$eval(selector, (el) => el.textContent ?? '')

  before(async () => {
    // Template builds go to a template dir of the test's own, not the shared store.
    templates = await scratchTemplatesDir(['debian'])
    stack = await startStack({ templatesDir: templates.dir, metricsIntervalMs: 250 })
    await mkdir(shotsDir, { recursive: true })
    downloads = await mkdtemp(join(tmpdir(), 'sandstorm-console-downloads-'))
    browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      args: chromiumArgs,
      defaultViewport: { width: 1280, height: 820 },
    })
    page = await browser.newPage()
    page.on('pageerror', (err) => pageErrors.push(String(err)))
    page.on('console', (msg) => {
      if (/Content Security Policy|Refused to (load|execute|apply|connect)/i.test(msg.text())) pageErrors.push(msg.text())
    })
    // Anything the page asks of another origin than the server would be a bug (a CDN, a font).
    await page.setRequestInterception(true)
    page.on('request', (req) => {
      const url = req.url()
      if (url.startsWith(stack.server.url) || url.startsWith('data:') || url.startsWith('blob:')) void req.continue()
      else void req.abort('blockedbyclient')
    })
    const cdp = await page.createCDPSession()
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads })
  })

  after(async () => {
    await browser?.close()
    await stack?.close()
    await templates?.remove()
    if (downloads) await rm(downloads, { recursive: true, force: true })
  })

  it('serves /ui without a key, with a strict CSP, nosniff and the SPA fallback; nothing outside dist/ui', async () => {
    const index = await fetch(`${stack.server.url}/ui`)
    assert.equal(index.status, 200)
    assert.match(index.headers.get('content-type') ?? '', /^text\/html/)
    const csp = index.headers.get('content-security-policy') ?? ''
    assert.match(csp, /default-src 'self'/)
    assert.match(csp, /script-src 'self'(;|$)/)
    assert.equal(index.headers.get('x-content-type-options'), 'nosniff')
    assert.ok(index.headers.get('cache-control'))
    const html = await index.text()
    assert.doesNotMatch(html, /<script(?![^>]*\ssrc=)[^>]*>/, 'no inline script')
    assert.doesNotMatch(html, /https?:\/\//, 'no CDN')

    const js = await fetch(`${stack.server.url}/ui/app.js`)
    assert.equal(js.status, 200)
    assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/)
    const etag = js.headers.get('etag')!
    assert.equal((await fetch(`${stack.server.url}/ui/app.js`, { headers: { 'if-none-match': etag } })).status, 304)
    assert.match((await fetch(`${stack.server.url}/ui/app.css`)).headers.get('content-type') ?? '', /^text\/css/)
    const deep = await fetch(`${stack.server.url}/ui/sandboxes/sbx-whatever/files`)
    assert.equal(deep.status, 200)
    assert.equal(await deep.text(), html)
    assert.equal((await fetch(`${stack.server.url}/ui/nothing.js`)).status, 404)

    // Traversals, with the key so that an answer of the API itself would be a 404 too: never the
    // key, never a file from outside dist/ui.
    const key = { authorization: `Bearer ${stack.server.apiKey}` }
    const paths = ['/ui/../api-key', '/ui/%2e%2e/api-key', '/ui/%2e%2e%2fapi-key', '/ui/..%2f..%2fpackage.json', '/ui/app.js/../../../package.json', '/ui/%2E%2E/%2E%2E/package.json', '/ui/.%00./api-key']
    for (const path of [...paths, '/ui/..\\..\\package.json']) {
      const r = await rawGet(stack.server.url, path, key)
      // Node's HTTP parser refuses a backslash in a path (400) before any route sees it.
      const expected = path.includes('\\') ? 400 : 404
      assert.equal(r.status, expected, `${path} answered ${r.status}: ${r.body.slice(0, 200)}`)
      assert.ok(!r.body.includes(stack.server.apiKey), `${path} leaked the key`)
      assert.doesNotMatch(r.body, /"devDependencies"/, `${path} served package.json`)
    }
  })

  it('without a key /ui shows the sign-in, and a wrong key is refused with the API\'s message', async () => {
    await gotoUi('')
    await page.waitForSelector('#sign-in input[name=apiKey]')
    await shot('sign-in')
    await page.type('#sign-in input[name=apiKey]', 'not-the-key')
    await page.click('#sign-in button[type=submit]')
    await page.waitForSelector('#sign-in-error')
    assert.match(await textOf('#sign-in-error'), /wrong API key/)
    await shot('sign-in-refused')
    assert.equal(await page.evaluate(() => sessionStorage.getItem('sandstorm.apiKey')), null)
  })

  it('signs in with the key and shows the sandboxes page', async () => {
    await page.$eval('#sign-in input[name=apiKey]', (el) => ((el as HTMLInputElement).value = ''))
    await page.type('#sign-in input[name=apiKey]', stack.server.apiKey)
    await page.click('#sign-in button[type=submit]')
    await page.waitForSelector('#sandbox-list')
    assert.equal(new URL(page.url()).pathname.startsWith('/ui'), true)
  })

  it('shows the API\'s own message for a create it refuses', async () => {
    await page.type('#create-sandbox input[name=labels]', 'bad key!=1')
    await page.click('#create-sandbox button[type=submit]')
    await page.waitForSelector('#create-sandbox .error')
    assert.match(await textOf('#create-sandbox .error'), /labels.*a label key of letters, digits/)
    assert.deepEqual(await Sandbox.list({ ...stack.conn }), [])
    await page.$eval('#create-sandbox input[name=labels]', (el) => ((el as HTMLInputElement).value = ''))
  })

  it('creates a sandbox with labels; the list shows it running with its labels; the label filter works', async () => {
    await page.type('#create-sandbox input[name=labels]', 'team=console, run=ui-test')
    await page.type('#create-sandbox input[name=timeout]', '10')
    await page.click('#create-sandbox button[type=submit]')
    await page.waitForSelector('#create-sandbox .ok a')
    sandboxId = (await textOf('#create-sandbox .ok a')).trim()
    const listed = await Sandbox.list({ ...stack.conn })
    assert.deepEqual(
      listed.map((s) => [s.id, s.state, s.labels]),
      [[sandboxId, 'running', { team: 'console', run: 'ui-test' }]],
    )
    const row = `tr[data-sandbox="${sandboxId}"]`
    await page.waitForSelector(`${row}[data-state=running]`)
    assert.ok(await page.$(`${row} .chip[data-label="team=console"]`))
    assert.ok(await page.$(`${row} .chip[data-label="run=ui-test"]`))
    assert.equal((await textOf(`${row} .badge`)).trim(), 'running')

    await page.type('input[name=label-filter]', 'team=nobody')
    await page.waitForSelector(row, { hidden: true })
    await page.$eval('input[name=label-filter]', (el) => {
      ;(el as HTMLInputElement).value = ''
      el.dispatchEvent(new Event('input', { bubbles: true }))
    })
    await page.type('input[name=label-filter]', 'team=console')
    await page.waitForSelector(row)
  })

  it('draws the CPU and memory sparklines from the metrics samples', async () => {
    const sb = await Sandbox.connect(sandboxId, { ...stack.conn })
    // Some CPU for the line to show, for a few samples; it ends by itself.
    await sb.commands.run('timeout 3 sh -c "while :; do :; done"', { ...stack.conn, background: true })
    const row = `tr[data-sandbox="${sandboxId}"]`
    for (const kind of ['cpu', 'memory']) {
      await page.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute('data-samples') ?? 0) >= 3, {}, `${row} .spark-${kind} svg`)
      const points = await page.$eval(`${row} .spark-${kind} polyline`, (el) => el.getAttribute('points') ?? '')
      assert.ok(points.split(' ').length >= 3, `${kind} line: ${points}`)
    }
    assert.match(await textOf(`${row} .spark-memory .spark-label`), /^[\d.]+[KMG]?i?B$/)
    await shot('sandboxes')
  })

  it('the terminal runs a shell: typed input comes back as output', async () => {
    await page.click(`tr[data-sandbox="${sandboxId}"] a`)
    await page.waitForSelector('.terminal .xterm')
    await page.waitForFunction(() => /running \(pid \d+\)/.test(document.querySelector('#term-status')?.textContent ?? ''))
    // Type once the shell's prompt is there, as a user would (typed earlier, the tty echoes it before the prompt).
    await until('the shell prompt', async () => /[#$]\s*$/m.test(await terminalText(page)))
    await page.click('.terminal')
    await page.keyboard.type('echo hello-$((6*7))')
    await page.keyboard.press('Enter')
    await until('hello-42 in the terminal', async () => /^hello-42\s*$/m.test(await terminalText(page)))
    await shot('terminal')
  })

  it('the terminal is sized to the pane, and resized with it', async () => {
    const size = (): Promise<string> => page.evaluate(() => `${window.__sandstormTerm!.rows} ${window.__sandstormTerm!.cols}`)
    const sttyShows = async (want: string): Promise<void> => {
      await page.keyboard.type('echo size-$(stty size | tr " " x)')
      await page.keyboard.press('Enter')
      const expected = `size-${want.replace(' ', 'x')}`
      await until(`${expected} in the terminal`, async () => new RegExp(`^${expected}\\s*$`, 'm').test(await terminalText(page)))
    }
    const before = await size()
    await sttyShows(before)
    await page.setViewport({ width: 900, height: 820 })
    await until('a narrower terminal', async () => (await size()) !== before)
    await sttyShows(await size())
    await page.setViewport({ width: 1280, height: 820 })
    await until('the terminal as wide as before', async () => (await size()) === before)
  })

  it('closing the terminal mid-session leaves no process and no pty in the sandbox', async () => {
    const sb = await Sandbox.connect(sandboxId, { ...stack.conn })
    await page.keyboard.type('sleep 4242 & echo started-$((1+1))')
    await page.keyboard.press('Enter')
    await until('started-2 in the terminal', async () => /^started-2\s*$/m.test(await terminalText(page)))
    // The shell forks the background job and echoes at once: the child may not have become the sleep yet.
    await until('the background sleep to run', async () => (await processesIn(sb, stack.conn)).some((p) => p.cmd === 'sleep 4242'))
    assert.ok((await ptysIn(sb, stack.conn)).length > 0, 'a pty is open')

    await page.click('button[name=close-terminal]')
    await until('no sleep, shell or pty left', async () => {
      const left = (await processesIn(sb, stack.conn)).filter((p) => p.cmd === 'sleep 4242' || /\b(bash|sh) -l\b/.test(p.cmd))
      return left.length === 0 && (await ptysIn(sb, stack.conn)).length === 0
    })
    assert.equal(await page.evaluate(() => window.__sandstormTerm === undefined), true)
  })

  it('closing the tab mid-session leaves no process and no pty either', async () => {
    const sb = await Sandbox.connect(sandboxId, { ...stack.conn })
    const tab = await browser.newPage()
    await tab.goto(`${stack.server.url}/ui`, { waitUntil: 'domcontentloaded' })
    await tab.evaluate((key) => sessionStorage.setItem('sandstorm.apiKey', key), stack.server.apiKey)
    await tab.goto(`${stack.server.url}/ui/sandboxes/${sandboxId}/terminal`, { waitUntil: 'domcontentloaded' })
    await tab.waitForFunction(() => /running \(pid \d+\)/.test(document.querySelector('#term-status')?.textContent ?? ''))
    await until('the shell prompt in the second tab', async () => /[#$]\s*$/m.test(await terminalText(tab)))
    await tab.click('.terminal')
    await tab.keyboard.type('sleep 4343 & echo started-$((2+2))')
    await tab.keyboard.press('Enter')
    await until('started-4 in the second tab', async () => /^started-4\s*$/m.test(await terminalText(tab)))
    await until('the background sleep to run in the second tab', async () => (await processesIn(sb, stack.conn)).some((p) => p.cmd === 'sleep 4343'))
    await tab.close()
    await until('no sleep, shell or pty left after the tab closed', async () => {
      const left = (await processesIn(sb, stack.conn)).filter((p) => p.cmd === 'sleep 4343' || /\b(bash|sh) -l\b/.test(p.cmd))
      return left.length === 0 && (await ptysIn(sb, stack.conn)).length === 0
    })
  })

  it('uploads a file from a file input and downloads one, bytes checked through the SDK', async () => {
    const sb = await Sandbox.connect(sandboxId, { ...stack.conn })
    const local = join(downloads, 'upload-me.bin')
    const bytes = new Uint8Array(70_000).map((_, i) => (i * 31 + 7) % 256)
    await writeFile(local, bytes)
    await page.click('a[data-tab=files]')
    await page.waitForSelector('#file-list')
    const input = await page.waitForSelector('input[name=upload]')
    await input!.uploadFile(local)
    await page.waitForFunction(() => /uploaded \/root\/upload-me\.bin/.test(document.querySelector('#files-done')?.textContent ?? ''))
    assert.deepEqual(await sb.files.read('/root/upload-me.bin', { ...stack.conn, format: 'bytes' }), bytes)
    await rm(local)

    const content = 'downloaded through the console\n'.repeat(100)
    await sb.files.write('/root/download-me.txt', content, { ...stack.conn })
    await page.click('form.toolbar button[type=submit]')
    const button = await page.waitForSelector('tr[data-entry="download-me.txt"] button[name=download]')
    await shot('files')
    await button!.click()
    const saved = join(downloads, 'download-me.txt')
    await until('the download on disk', async () => existsSync(saved) && (await readFile(saved, 'utf8')) === content)
    assert.deepEqual(await readdir(downloads), ['download-me.txt'])
  })

  it('takes a snapshot, draws the tree by parentId, forks from a node into a new sandbox and restores from one', async () => {
    await page.click('a[data-tab=snapshots]')
    await page.type('input[name=snapshot-label]', 'console-snap')
    await page.click('button[name=take-snapshot]')
    await page.waitForFunction(() => [...document.querySelectorAll('#snapshot-tree .node .chip')].some((c) => c.textContent === 'console-snap'))
    const [snap] = await listSnapshots({ ...stack.conn })
    snapshotId = snap!.id
    assert.equal(snap!.sandboxId, sandboxId)

    await page.click(`.node[data-snapshot="${snapshotId}"] button[name=fork]`)
    await page.waitForSelector('#snapshot-result a')
    const forkId = (await textOf('#snapshot-result a')).trim()
    const forked = await Sandbox.connect(forkId, { ...stack.conn })
    assert.equal((await forked.files.read('/root/download-me.txt', { ...stack.conn })).length, 'downloaded through the console\n'.length * 100)

    // A snapshot of the fork is the snapshot's child: drawn inside its node's branch.
    const child = await forked.snapshot({ ...stack.conn, label: 'of-the-fork' })
    assert.equal(child.parentId, snapshotId)
    await page.reload({ waitUntil: 'domcontentloaded' })
    await page.waitForSelector(`li:has(> .node[data-snapshot="${snapshotId}"]) > ul.tree > li > .node[data-snapshot="${child.id}"]`)
    await shot('snapshots')

    // Restore from the node: a file written since the snapshot is gone, one from before it is there.
    const sb = await Sandbox.connect(sandboxId, { ...stack.conn })
    await sb.files.write('/root/after-the-snapshot', 'x', { ...stack.conn })
    await page.click(`.node[data-snapshot="${snapshotId}"] button[name=restore]`)
    await page.waitForFunction((id) => document.querySelector('#snapshot-result')?.textContent?.includes(`to ${id}`), {}, snapshotId)
    assert.equal(await sb.files.exists('/root/after-the-snapshot', { ...stack.conn }), false)
    assert.equal(await sb.files.exists('/root/upload-me.bin', { ...stack.conn }), true)

    // The fork is killed from the list: two clicks, then it is gone from the API and the page.
    await page.click('header nav a[href="/ui/sandboxes"]')
    const row = `tr[data-sandbox="${forkId}"]`
    await page.waitForSelector(row)
    await page.click(`${row} button[name=kill]`)
    await page.waitForFunction((sel) => document.querySelector(sel)?.textContent?.includes('Really'), {}, `${row} button[name=kill]`)
    await page.click(`${row} button[name=kill]`)
    await page.waitForSelector(row, { hidden: true })
    assert.deepEqual((await Sandbox.list({ ...stack.conn })).map((s) => s.id), [sandboxId])
  })

  it('lists templates and builds one from steps, with its log live', async () => {
    await page.click('header nav a[href="/ui/templates"]')
    await page.waitForSelector('#template-list tr[data-template=debian]')
    await page.type('#build-template input[name=name]', 'console-built')
    await page.type('#build-template textarea[name=steps]', 'echo built-by-the-console | tee /etc/console-built')
    await page.click('#build-template button[type=submit]')
    await page.waitForFunction(() => /^(done|failed)$/.test(document.querySelector('#build-state')?.textContent ?? ''), { timeout: 180_000 })
    const log = await textOf('#build-log')
    assert.equal(await textOf('#build-state'), 'done', log)
    assert.match(log, /\$ echo built-by-the-console/)
    assert.match(log, /^built-by-the-console$/m)
    assert.match(log, /built console-built version 1/)
    await page.waitForSelector('#template-list tr[data-template=console-built]')
    await shot('templates')
  })

  it('shows pools with ready, hits and misses, set from the page', async () => {
    await page.click('header nav a[href="/ui/pools"]')
    await page.waitForSelector('#add-pool')
    await page.select('#add-pool select[name=template]', 'debian')
    await page.click('#add-pool button[type=submit]')
    const row = 'tr[data-pool=debian]'
    await page.waitForFunction((sel) => document.querySelector(`${sel} [data-field=ready]`)?.textContent === '1', { timeout: 120_000 }, row)
    const taken = await Sandbox.create('debian', { ...stack.conn })
    await page.waitForFunction((sel) => document.querySelector(`${sel} [data-field=hits]`)?.textContent === '1', {}, row)
    assert.equal(await textOf(`${row} [data-field=misses]`), '0')
    assert.equal((await listPools({ ...stack.conn }))[0]?.hits, 1)
    await shot('pools')
    await taken.kill({ ...stack.conn })
    await deletePool('debian', { ...stack.conn })
  })

  it('shows the local agent with its heartbeat and capacity', async () => {
    await page.click('header nav a[href="/ui/agents"]')
    await page.waitForSelector('#agent-list tr[data-agent]')
    assert.match(await textOf('#agent-list [data-field=capacity]'), /^\d+ CPU · [\d.]+[KMGT]iB$/)
    assert.match(await textOf('#agent-list time'), /(ago|in \d+ s)$/)
    await shot('agents')
  })

  it('shows a fleet agent\'s heartbeat and load, beside its capacity', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-console-fleet-'))
    let server: ServerProcess | undefined
    let agent: ResultPromise | undefined
    const tab = await browser.newPage()
    try {
      server = await startServerProcess({ dataDir: join(dir, 'server'), agentHost: '127.0.0.1' })
      agent = startAgentProcess({ server: server.agentAddress, token: server.token, dataDir: join(dir, 'agent') })
      await tab.setViewport({ width: 1280, height: 480 })
      await tab.goto(`${server.url}/ui`, { waitUntil: 'domcontentloaded' })
      await tab.evaluate((key) => sessionStorage.setItem('sandstorm.apiKey', key), server.apiKey)
      await tab.goto(`${server.url}/ui/agents`, { waitUntil: 'domcontentloaded' })
      // The agent's first heartbeat carries its metrics; the page polls until it shows them.
      await tab.waitForFunction(() => /^\d+\.\d\d$/.test(document.querySelector('#agent-list [data-field=load]')?.textContent ?? ''), { timeout: 60_000 })
      assert.match((await tab.$eval('#agent-list [data-field=sandboxes]', (el) => el.textContent)) ?? '', /^\d+$/)
      assert.match((await tab.$eval('#agent-list .badge', (el) => el.textContent)) ?? '', /^live$/)
      await shot('agents-fleet', tab)
    } finally {
      await tab.close()
      await stopFleetProcesses(agent, server, dir)
    }
  })

  it('an API request without a key answers 401; a refused key takes the console back to the sign-in', async () => {
    const r = await fetch(`${stack.server.url}/v1/sandboxes`)
    assert.equal(r.status, 401)
    assert.match(((await r.json()) as { message: string }).message, /missing API key/)

    // The key stored in the tab is refused (revoked, say): the next call signs the console out.
    await page.evaluate(() => sessionStorage.setItem('sandstorm.apiKey', 'revoked-key'))
    await gotoUi('/sandboxes')
    await page.waitForSelector('#sign-in-notice')
    assert.match(await textOf('#sign-in-notice'), /refused the key.*wrong API key/)
    assert.equal(await page.evaluate(() => sessionStorage.getItem('sandstorm.apiKey')), null)
  })

  it('ran without an uncaught error or a Content-Security-Policy refusal in the page, and the policy holds', async () => {
    assert.deepEqual(pageErrors, [])
    // The policy is enforced, and its refusals are what the listener above catches: an inline
    // script added to the page does not run and is reported.
    const ran = await page.evaluate(async () => {
      const script = document.createElement('script')
      script.textContent = 'window.__inlineRan = true'
      document.body.append(script)
      await new Promise((resolve) => requestAnimationFrame(resolve))
      return (window as { __inlineRan?: boolean }).__inlineRan === true
    })
    assert.equal(ran, false)
    await until('the refusal reported', async () => pageErrors.some((e) => /Content Security Policy/.test(e)))
  })

  it('writes the README\'s overview screenshot when asked to', { skip: process.env.SANDSTORM_UPDATE_SCREENSHOT !== '1' && 'set SANDSTORM_UPDATE_SCREENSHOT=1 to rewrite docs/console.png' }, async () => {
    await page.evaluate((key) => sessionStorage.setItem('sandstorm.apiKey', key), stack.server.apiKey)
    const more = [
      await Sandbox.create('debian', { ...stack.conn, labels: { team: 'data', job: 'etl' } }),
      await Sandbox.create('debian', { ...stack.conn, labels: { team: 'agents', run: 'eval-17' } }),
    ]
    // Some work for the lines to show: CPU in two, memory in one; each ends by itself.
    const busy = await Sandbox.connect(sandboxId, { ...stack.conn })
    await busy.commands.run('timeout 12 sh -c "while :; do :; done"', { ...stack.conn, background: true })
    await more[0]!.commands.run('timeout 12 sh -c "head -c 120000000 /dev/zero | tail"', { ...stack.conn, background: true })
    await more[1]!.commands.run('sleep 3; timeout 8 sh -c "while :; do :; done"', { ...stack.conn, background: true })
    await gotoUi('/sandboxes')
    const row = `tr[data-sandbox="${more[1]!.sandboxId}"]`
    await page.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute('data-samples') ?? 0) >= 30, { timeout: 60_000 }, `${row} .spark-cpu svg`)
    await page.setViewport({ width: 1280, height: 460 })
    await page.screenshot({ path: join(repo, 'docs/console.png') as `${string}.png` })
    await page.setViewport({ width: 1280, height: 820 })
    for (const sb of more) await sb.kill({ ...stack.conn })
  })
})
