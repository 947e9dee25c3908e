/**
 * Network namespaces for fleet tests: a bridge on the host at 198.19.X.1/24 and one namespace per
 * agent at 198.19.X.(10+i), joined by veth pairs, on a /24 of 198.19.0.0/16 that no other test
 * run holds (sandboxes take 198.18.0.0/16). The test makes and removes everything itself.
 */
import { randomBytes } from 'node:crypto'
import { execa } from 'execa'

/** The namespaces of one test run. */
export interface TestNetwork {
  /** The host's address on the bridge: the server listens here. */
  hostAddress: string
  /** Namespace names, one per agent. */
  namespaces: string[]
  /** Each namespace's address. */
  addresses: string[]
  /** Removes namespaces, links and the bridge; safe to call twice. */
  remove(): Promise<void>
}

const ip = (args: string[]): Promise<unknown> => execa('ip', args)

/** Makes `count` namespaces behind one bridge. */
export async function createTestNetwork(count: number): Promise<TestNetwork> {
  const tag = randomBytes(3).toString('hex')
  const bridge = `tbr${tag}`
  const namespaces = Array.from({ length: count }, (_, i) => `tfleet-${tag}-${i}`)
  let octet = 0
  const at = (n: number) => `198.19.${octet}.${n}`
  let removed = false
  const remove = async (): Promise<void> => {
    if (removed) return
    removed = true
    for (const [i, ns] of namespaces.entries()) {
      await execa('ip', ['netns', 'del', ns], { reject: false })
      await execa('ip', ['link', 'del', `tfh${tag}${i}`], { reject: false })
    }
    await execa('ip', ['link', 'del', bridge], { reject: false })
  }
  try {
    await ip(['link', 'add', bridge, 'type', 'bridge'])
    // A /24 no other test run holds: the bridge's address on it is the claim.
    for (let attempt = 0; attempt < 20 && octet === 0; attempt++) {
      const candidate = 1 + (randomBytes(1)[0]! % 254)
      if ((await execa('ip', ['addr', 'add', `198.19.${candidate}.1/24`, 'dev', bridge], { reject: false })).exitCode === 0) octet = candidate
    }
    if (octet === 0) throw new Error('no free /24 in 198.19.0.0/16 for a fleet test network')
    await ip(['link', 'set', bridge, 'up'])
    for (const [i, ns] of namespaces.entries()) {
      const host = `tfh${tag}${i}`
      const peer = `tfa${tag}${i}`
      await ip(['netns', 'add', ns])
      await ip(['link', 'add', host, 'type', 'veth', 'peer', 'name', peer])
      await ip(['link', 'set', peer, 'netns', ns])
      await ip(['link', 'set', host, 'master', bridge])
      await ip(['link', 'set', host, 'up'])
      await ip(['-n', ns, 'addr', 'add', `${at(10 + i)}/24`, 'dev', peer])
      await ip(['-n', ns, 'link', 'set', peer, 'up'])
      await ip(['-n', ns, 'link', 'set', 'lo', 'up'])
    }
  } catch (err) {
    await remove()
    throw err
  }
  return { hostAddress: at(1), namespaces, addresses: namespaces.map((_, i) => at(10 + i)), remove }
}
