/**
 * A test "internet": a network namespace on a /24 of 198.19.0.0/16 (RFC 2544 space, never
 * routed) joined to the host by a veth, with HTTP, HTTPS and DNS servers for a small zone
 * (internet-host.ts). The agent under test is pointed at its DNS server and told to count the
 * lower half of the /24 as public; the upper half (`lan`) stays private, as a LAN would be, so
 * that refusing private ranges is tested without a packet to any other range. Nothing here sends
 * a packet anywhere else; the test makes and removes it all.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'

/** A running test internet. */
export interface TestInternet {
  /** Its lower half (a /25), to give the agent as a public range. */
  cidr: string
  /** The host's address on it. */
  hostSide: string
  /** Where each name of the zone points, and the DNS server. */
  addresses: { allowed: string; denied: string; other: string; dns: string; stats: string; lan: string }
  /** The zone: names to addresses (or CNAMEs). */
  zone: Record<string, { A?: string[]; CNAME?: string }>
  /** The CA that signed the HTTPS server's certificate. */
  caPem: string
  /** What the DNS server was asked (`A allowed.test`) and the datagrams to UDP 9999 (`<source> <payload>`). */
  stats(): Promise<{ asked: string[]; datagrams: string[] }>
  /** The namespace's name (for `ip netns exec`). */
  netns: string
  remove(): Promise<void>
}

const hostScript = fileURLToPath(new URL('./internet-host.js', import.meta.url))

async function makeCertificates(dir: string, names: string[]): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const f = (n: string) => join(dir, n)
  await execa('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=sandstorm-test-internet-ca'])
  await execa('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${names[0]}`])
  await writeFile(f('ext.cnf'), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n`)
  await execa('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf')])
  const [caPem, certPem, keyPem] = await Promise.all(['ca.pem', 'server.pem', 'server.key'].map((n) => readFile(f(n), 'utf8')))
  return { caPem: caPem!, certPem: certPem!, keyPem: keyPem! }
}

/** Makes the namespace, its addresses and its servers. */
export async function createTestInternet(): Promise<TestInternet> {
  const tag = randomBytes(3).toString('hex')
  const netns = `tnet-${tag}`
  const hostIf = `tnh${tag}`
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-internet-'))
  let child: ChildProcess | undefined
  let octet = 0
  const remove = async (): Promise<void> => {
    child?.kill('SIGKILL')
    await execa('ip', ['-force', '-batch', '-'], { input: `link del ${hostIf}\nnetns del ${netns}\n`, reject: false })
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await execa('ip', ['-batch', '-'], { input: `netns add ${netns}\nlink add ${hostIf} type veth peer name eth0 netns ${netns}\nlink set ${hostIf} up\n` })
    // A /24 no other test run holds: the host's address on it is the claim.
    for (let attempt = 0; attempt < 20 && octet === 0; attempt++) {
      const candidate = 1 + (randomBytes(1)[0]! % 254)
      const r = await execa('ip', ['addr', 'add', `198.19.${candidate}.1/24`, 'dev', hostIf], { reject: false })
      if (r.exitCode === 0) octet = candidate
    }
    if (octet === 0) throw new Error('no free /24 in 198.19.0.0/16 for a test internet')
    const at = (n: number) => `198.19.${octet}.${n}`
    const addresses = { stats: at(2), allowed: at(10), denied: at(20), other: at(30), dns: at(53), lan: at(200) }
    const inside = ['link set lo up', 'link set eth0 up', ...Object.values(addresses).map((a) => `addr add ${a}/24 dev eth0`)]
    await execa('ip', ['-n', netns, '-batch', '-'], { input: `${inside.join('\n')}\n` })
    const zone: TestInternet['zone'] = {
      'allowed.test': { A: [addresses.allowed] },
      'www.allowed.test': { A: [addresses.allowed] },
      'lan.test': { A: [addresses.lan] },
      'denied.test': { A: [addresses.denied] },
      'other.test': { A: [addresses.other] },
      'alias.test': { CNAME: 'denied.test' },
      // In the sandboxes' own range, never reachable (as link-local, cloud metadata, is): an allowed
      // name pointing there must resolve to nothing. An answer only; no packet goes there.
      'never.test': { A: ['198.18.255.254'] },
      // The host's own address on this link: an allowed name pointing there must resolve to nothing
      // too (the name checks dial from the host, where no sandbox rule applies).
      'host.test': { A: [at(1)] },
    }
    const certs = await makeCertificates(dir, ['allowed.test', 'denied.test', 'alias.test', 'other.test', '*.allowed.test'])
    const config = JSON.stringify({ zone, certPem: certs.certPem, keyPem: certs.keyPem })
    child = spawn('ip', ['netns', 'exec', netns, process.execPath, hostScript, config], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, SANDSTORM_INTERNET_HOST: '1' } })
    await new Promise<void>((resolve, reject) => {
      child!.once('exit', (code) => reject(new Error(`the test internet's servers exited (${code})`)))
      child!.stdout!.setEncoding('utf8').on('data', (text: string) => text.includes('ready') && resolve())
    })
    return {
      cidr: `198.19.${octet}.0/25`,
      hostSide: at(1),
      addresses,
      zone,
      caPem: certs.caPem,
      netns,
      async stats() {
        const res = await fetch(`http://${addresses.stats}:8080/stats`)
        return (await res.json()) as { asked: string[]; datagrams: string[] }
      },
      remove,
    }
  } catch (err) {
    await remove()
    throw err
  }
}
