/**
 * Network namespaces for fleet tests: a bridge on the host at 198.18.0.1/24 and one namespace per
 * agent at 198.18.0.(10+i), joined by veth pairs. Addresses come only from 198.18.0.0/15, the
 * range set aside for network test benches; the test makes and removes everything itself.
 */
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
  const tag = (process.pid % 10000).toString(36)
  const bridge = `sstbr${tag}`
  const namespaces = Array.from({ length: count }, (_, i) => `sst-${tag}-${i}`)
  const addresses = namespaces.map((_, i) => `198.18.0.${10 + i}`)
  let removed = false
  const remove = async (): Promise<void> => {
    if (removed) return
    removed = true
    for (const [i, ns] of namespaces.entries()) {
      await execa('ip', ['netns', 'del', ns], { reject: false })
      await execa('ip', ['link', 'del', `sst${tag}h${i}`], { reject: false })
    }
    await execa('ip', ['link', 'del', bridge], { reject: false })
  }
  try {
    await ip(['link', 'add', bridge, 'type', 'bridge'])
    await ip(['addr', 'add', '198.18.0.1/24', 'dev', bridge])
    await ip(['link', 'set', bridge, 'up'])
    for (const [i, ns] of namespaces.entries()) {
      const host = `sst${tag}h${i}`
      const peer = `sst${tag}a${i}`
      await ip(['netns', 'add', ns])
      await ip(['link', 'add', host, 'type', 'veth', 'peer', 'name', peer])
      await ip(['link', 'set', peer, 'netns', ns])
      await ip(['link', 'set', host, 'master', bridge])
      await ip(['link', 'set', host, 'up'])
      await ip(['-n', ns, 'addr', 'add', `${addresses[i]}/24`, 'dev', peer])
      await ip(['-n', ns, 'link', 'set', peer, 'up'])
      await ip(['-n', ns, 'link', 'set', 'lo', 'up'])
    }
  } catch (err) {
    await remove()
    throw err
  }
  return { hostAddress: '198.18.0.1', namespaces, addresses, remove }
}
