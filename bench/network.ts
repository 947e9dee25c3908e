/**
 * network: what a sandbox's network costs, each figure beside its baseline in the same run.
 *   - egress: an HTTP GET from a sandbox to a test host (NAT, nftables) beside the same GET from
 *     the host, by the same Python client;
 *   - ingress: a GET through the server's ingress beside a GET from the host straight to the
 *     sandbox's address, and a 256 MiB download both ways (throughput);
 *   - create with a network beside `network: 'none'`, and pooled creates with the default policy
 *     and with a policy set at hand-over.
 * The test host is the tests' own test internet (a netns on 198.19.X.0/24); no packet leaves the machine.
 */
import { request, Agent } from 'node:http'
import { execa } from 'execa'
import { deletePool, Sandbox, setPool, waitForPool } from '@sandstorm/sdk'
import { createTestInternet } from '../test/helpers/internet.js'
import { startBenchStack } from './bench-stack.js'
import { checkAborted, type BenchContext, type Benchmark } from './context.js'
import type { BenchResult } from './report.js'
import { summarize, timed } from './stats.js'

const defaultIterations = 200

/** A Python client that times `n` GETs of `url` (a new connection each), one millisecond figure a line. */
const pythonGets = (url: string, n: number): string[] => [
  'python3',
  '-c',
  [
    'import http.client, sys, time, urllib.parse',
    `u = urllib.parse.urlparse(${JSON.stringify(url)})`,
    `for _ in range(${n + 5}):`,
    '    t = time.perf_counter()',
    '    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)',
    '    c.request("GET", u.path); c.getresponse().read(); c.close()',
    '    print((time.perf_counter() - t) * 1000)',
  ].join('\n'),
]
/** The samples of pythonGets, less its first five (warm-up). */
const samplesOf = (stdout: string): number[] => stdout.trim().split('\n').map(Number).slice(5)

/** One GET on `port` of 127.0.0.1 with this Host (a kept-alive connection), resolved with how long it took, or a 256 MiB body's. */
function get(agent: Agent, host: string, port: number, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now()
    request({ host, port, path, agent, headers }, (res) => {
      res.on('data', () => undefined)
      res.on('end', () => resolve(performance.now() - t))
      res.on('error', reject)
    })
      .on('error', reject)
      .end()
  })
}

/** The network benchmark. */
export const networkBenchmark: Benchmark = {
  name: 'network',
  title: 'egress, ingress and create with a network, beside baselines',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const n = ctx.iterations ?? defaultIterations
    const notes: string[] = []
    const net = await createTestInternet()
    // A stack of its own: its agent counts the test internet as public and asks its DNS server.
    const stack = await startBenchStack({ network: { publicCidrs: [net.cidr], dnsUpstreams: [net.addresses.dns] } })
    const conn = stack.conn
    const made: Sandbox[] = []
    try {
      // Egress: the same client, in a sandbox and on the host.
      ctx.progress('egress: GETs from a sandbox and from the host')
      const client = await Sandbox.create('debian', { ...conn })
      made.push(client)
      const url = `http://${net.addresses.allowed}:8080/`
      const inside = samplesOf((await client.commands.run(pythonGets(url, n), { timeoutMs: 300_000 })).stdout)
      const outside = samplesOf((await execa(pythonGets(url, n)[0]!, pythonGets(url, n).slice(1))).stdout)
      checkAborted(ctx.signal)

      // Ingress: a Node server in a sandbox of the host template (the host's /usr has node).
      ctx.progress('ingress: GETs through the server and straight to the sandbox')
      const server = await Sandbox.create('host', { ...conn })
      made.push(server)
      const serve = "const b = Buffer.alloc(1 << 20, 120); require('http').createServer((q, r) => { if (q.url === '/big') { r.writeHead(200, { 'content-length': String(256 * b.length) }); let i = 0; const more = () => { while (i < 256) { i++; if (!r.write(b)) return void r.once('drain', more) } r.end() }; more() } else r.end('ok') }).listen(8000)"
      await server.commands.run(['node', '-e', serve], { background: true })
      // Its own address: a UDP socket's source toward the gateway (nothing is sent).
      const address = (await server.commands.run(['python3', '-c', "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('198.18.0.1', 53)); print(s.getsockname()[0])"])).stdout.trim()
      const port = Number(new URL(stack.server.url).port)
      const host = `8000-${server.sandboxId}.${stack.server.domain}`
      const ingressAgent = new Agent({ keepAlive: true, maxSockets: 1 })
      const directAgent = new Agent({ keepAlive: true, maxSockets: 1 })
      for (let i = 0; i < 200; i++) {
        const ready = await get(ingressAgent, '127.0.0.1', port, '/', { host }).then(() => true, () => false)
        if (ready) break
        await new Promise((r) => setTimeout(r, 50))
      }
      const viaIngress: number[] = []
      const direct: number[] = []
      for (let i = 0; i < n + 10; i++) {
        checkAborted(ctx.signal)
        // Interleaved, so that whatever else the host does weighs on both alike.
        const a = await get(ingressAgent, '127.0.0.1', port, '/', { host })
        const b = await get(directAgent, address, 8000, '/')
        if (i >= 10) viaIngress.push(a), direct.push(b)
      }
      // Bulk by curl, a client of its own: in this process it would share the proxy's one thread.
      const curl = async (url: string, headers: string[] = []): Promise<number> =>
        Number((await execa('curl', ['-s', '-o', '/dev/null', '-w', '%{time_total}', ...headers.flatMap((h) => ['-H', h]), url])).stdout) * 1000
      const bulkIngress: number[] = []
      const bulkDirect: number[] = []
      for (let i = 0; i < 8; i++) {
        checkAborted(ctx.signal)
        bulkIngress.push(await curl(`http://127.0.0.1:${port}/big`, [`Host: ${host}`]))
        bulkDirect.push(await curl(`http://${address}:8000/big`))
      }
      ingressAgent.destroy()
      directAgent.destroy()
      const mbps = (ms: number[]) => (256 / (summarize(ms).p50 / 1000)).toFixed(0)
      notes.push(`ingress keeps the client's connection alive and opens one connection into the sandbox per request (as E2B's proxy does); the direct GETs reuse one connection`)
      notes.push(`bulk: 256 MiB downloads, p50 ${mbps(bulkIngress)} MiB/s through ingress, ${mbps(bulkDirect)} MiB/s direct (throughput ratio ${(summarize(bulkDirect).p50 / summarize(bulkIngress).p50).toFixed(2)})`)

      // Create with a network beside without, interleaved.
      ctx.progress('create with and without a network')
      const withNet: number[] = []
      const without: number[] = []
      const createOnce = async (network?: 'none'): Promise<number> => {
        const { ms, value } = await timed(() => Sandbox.create('debian', { ...conn, ...(network ? { network } : {}) }))
        await value.kill()
        return ms
      }
      await createOnce()
      await createOnce('none')
      const creates = Math.min(n, 40)
      for (let i = 0; i < creates; i++) {
        checkAborted(ctx.signal)
        withNet.push(await createOnce())
        without.push(await createOnce('none'))
      }

      // Pooled creates: the default policy, and another one set at hand-over.
      ctx.progress('pooled creates with the default policy and with one set at hand-over')
      const pooledDefault: number[] = []
      const pooledPolicy: number[] = []
      await setPool('debian', { ...conn, min: 4, max: 8 })
      try {
        for (let i = 0; i < creates; i++) {
          checkAborted(ctx.signal)
          await waitForPool('debian', { ...conn, ready: 4 })
          const a = await timed(() => Sandbox.create('debian', { ...conn }))
          await waitForPool('debian', { ...conn, ready: 4 })
          const b = await timed(() => Sandbox.create('debian', { ...conn, network: { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] } }))
          pooledDefault.push(a.ms)
          pooledPolicy.push(b.ms)
          await Promise.all([a.value.kill(), b.value.kill()])
        }
      } finally {
        await deletePool('debian', conn)
      }
      notes.push('pooled sandboxes start with the default policy; a create that asks for another one has it set (one nftables transaction on the agent) before the answer')

      return {
        name: 'network',
        title: this.title,
        notes,
        figures: [
          { what: 'HTTP GET (new connection) from a sandbox to a test host, through NAT and its nftables chain', unit: 'ms', subject: summarize(inside), baseline: { what: 'the same GET by the same client on the host', summary: summarize(outside) } },
          { what: 'HTTP GET of a sandbox port through the server\'s ingress (Host routing)', unit: 'ms', subject: summarize(viaIngress), baseline: { what: 'the same GET from the host straight to the sandbox\'s address', summary: summarize(direct) } },
          { what: '256 MiB download through ingress', unit: 'ms', subject: summarize(bulkIngress), baseline: { what: 'the same download straight from the sandbox', summary: summarize(bulkDirect) } },
          { what: "Sandbox.create('debian') with a network (the default)", unit: 'ms', subject: summarize(withNet), baseline: { what: "Sandbox.create('debian', { network: 'none' })", summary: summarize(without) } },
          { what: 'pooled create with a policy set at hand-over', unit: 'ms', subject: summarize(pooledPolicy), baseline: { what: 'pooled create with the default policy', summary: summarize(pooledDefault) } },
        ],
      }
    } finally {
      for (const s of made) await s.kill().catch(() => undefined)
      ctx.leftovers(await stack.close())
      await net.remove()
    }
  },
}
