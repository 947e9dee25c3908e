/** `sandstorm up`, `sandstorm server` and `sandstorm agent`s as separate processes, for tests and benchmarks. */
import { mkdir, readFile, readlink, rm, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execa, type ResultPromise } from 'execa'
import { templatesDir } from './stack.js'

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))

/**
 * A template dir of its own for a test that makes template versions: the shared debian version,
 * linked in, so that nothing made there lands in the shared store.
 */
export async function ownTemplatesDir(dir: string): Promise<string> {
  await mkdir(join(dir, 'debian'), { recursive: true })
  const version = await readlink(join(templatesDir, 'debian', 'current'))
  await symlink(join(templatesDir, 'debian', version), join(dir, 'debian', version))
  await symlink(version, join(dir, 'debian', 'current'))
  return dir
}

/** A started server process and what it printed. */
export interface ServerProcess {
  child: ResultPromise
  url: string
  apiKey: string
  agentAddress: string
  token: string
}

/** Waits for a line of a child's stdout that matches, or fails when the child exits first. */
function lineOf(child: ResultPromise, pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let text = ''
    const onData = (chunk: Buffer): void => {
      text += chunk.toString()
      const match = pattern.exec(text)
      if (match) {
        child.stdout?.off('data', onData)
        resolve(match)
      }
    }
    child.stdout?.on('data', onData)
    child.then(
      (r) => reject(new Error(`exited (${r.exitCode}) before printing ${pattern}: ${text}${String(r.stderr).slice(-2000)}`)),
      (e: Error) => reject(new Error(`exited before printing ${pattern}: ${e.message.slice(-2000)}`)),
    )
  })
}

const env = { SANDSTORM_TEMPLATES_DIR: templatesDir, SANDSTORM_LOG_LEVEL: process.env.SANDSTORM_TEST_LOGS ? 'debug' : 'warn' }

/** A started `sandstorm up` and how to reach it. */
export interface UpProcess {
  child: ResultPromise
  conn: { apiUrl: string; apiKey: string }
}

/**
 * Starts `sandstorm up` on `dataDir` (port 0, templates from the shared store unless `args` name
 * others) and resolves once it listens, that is after adoption; fails when it exits first. It keeps
 * no default warm pools (`--no-pool`: pooled sandboxes are not in the catalog, and a test counting
 * what runs on the host would find them) unless `args` name `--pool` or `defaultPools` is set.
 */
export async function startUpProcess(dataDir: string, args: string[] = [], options: { defaultPools?: boolean } = {}): Promise<UpProcess> {
  const poolArgs = options.defaultPools || args.some((a) => a === '--pool' || a === '--no-pool') ? [] : ['--no-pool']
  const child = execa('node', [cli, 'up', '--data-dir', dataDir, '--port', '0', ...poolArgs, ...args], {
    env,
    reject: false,
    stdin: 'ignore',
    buffer: { stdout: false },
    stderr: process.env.SANDSTORM_TEST_LOGS ? 'inherit' : 'pipe',
  })
  const [, apiUrl] = await lineOf(child, /listening on (http:\/\/\S+)/)
  return { child, conn: { apiUrl: apiUrl!, apiKey: (await readFile(join(dataDir, 'api-key'), 'utf8')).trim() } }
}

/**
 * Starts `sandstorm server` (the HTTP API on 127.0.0.1, agents on `agentHost`). Agents are told to
 * beat every `heartbeatMs` (default 500, so that tests see metrics soon); `lostAfterMs` is the
 * server's (15 s) unless given.
 */
export async function startServerProcess(o: { dataDir: string; agentHost: string; agentPort?: number; port?: number; heartbeatMs?: number; lostAfterMs?: number }): Promise<ServerProcess> {
  const args = [cli, 'server', '--data-dir', o.dataDir, '--port', String(o.port ?? 0), '--agent-host', o.agentHost, '--agent-port', String(o.agentPort ?? 0)]
  args.push('--heartbeat-ms', String(o.heartbeatMs ?? 500))
  if (o.lostAfterMs !== undefined) args.push('--lost-after-ms', String(o.lostAfterMs))
  const child = execa('node', args, {
    env,
    reject: false,
    stdin: 'ignore',
    stderr: 'pipe',
    buffer: { stdout: false },
  })
  child.stderr?.resume()
  const [, url, agentAddress, token] = await lineOf(child, /listening on (http:\/\/\S+)[\s\S]*--server (\S+) --token (\S+)/)
  const apiKey = (await readFile(`${o.dataDir}/api-key`, 'utf8')).trim()
  return { child, url: url!, apiKey, agentAddress: agentAddress!, token: token! }
}

/**
 * Starts `sandstorm agent`, inside a network namespace when `netns` is given (nsenter execs node:
 * the child's pid is the agent's). Templates come from the shared store unless `templatesDir` is
 * given: a test that makes template versions gives one of its own.
 */
export function startAgentProcess(o: { netns?: string; server: string; token?: string; dataDir: string; templatesDir?: string }): ResultPromise {
  // nsenter joins the network namespace only: `ip netns exec` would also remount /sys, hiding the cgroup tree runc needs.
  const args = [...(o.netns ? [`--net=/run/netns/${o.netns}`] : []), 'node', cli, 'agent', '--server', o.server, '--data-dir', o.dataDir, '--templates-dir', o.templatesDir ?? templatesDir]
  if (o.token) args.push('--token', o.token)
  const options = { env, reject: false, stdin: 'ignore', buffer: { stdout: false, stderr: true } } as const
  const child = o.netns ? execa('nsenter', args, options) : execa(args[0]!, args.slice(1), options)
  child.stdout?.resume()
  return child
}

/** Stops a test's agent and server processes (either may never have started) and removes their dir. */
export async function stopFleetProcesses(agent: ResultPromise | undefined, server: ServerProcess | undefined, dir: string | undefined): Promise<void> {
  agent?.kill('SIGTERM')
  await agent
  server?.child.kill('SIGTERM')
  await server?.child
  if (dir) await rm(dir, { recursive: true, force: true })
}
