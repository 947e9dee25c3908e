/**
 * The one contract of the server <-> agent link: every call the server makes of a remote agent,
 * with its input and its answer. The server's client (server/fleet/link-client.ts) and the agent's
 * handlers (agent/link-handlers.ts) are both typed from these tables, so a renamed field or a
 * missing call fails to compile on both sides instead of at run time. On the wire an input is the
 * JSON payload of a Request (agent.proto); bytes travel on Data streams.
 */
import type { EgressPolicy, EntryInfo, ProcessInfo, ProcessResult, TemplateInfo, TemplateStart } from '../shared/index.js'
import type { AgentCreateRequest, AgentExecRequest, AgentSandbox, AgentSandboxStats, TerminalSize } from './agent-api.js'
import type { AgentSnapshot } from './snapshot-api.js'

/** Calls answered with one Reply on Control: input and output of each. */
export interface LinkUnary {
  templates: { input: null; output: TemplateInfo[] }
  create: { input: AgentCreateRequest; output: AgentSandbox }
  destroy: { input: { id: string }; output: void }
  list: { input: null; output: AgentSandbox[] }
  pause: { input: { id: string }; output: void }
  resume: { input: { id: string }; output: void }
  stats: { input: { id: string }; output: AgentSandboxStats }
  statsMany: { input: { ids: string[] }; output: Record<string, AgentSandboxStats> }
  wait: { input: { id: string; pid: number }; output: ProcessResult }
  processes: { input: { id: string }; output: ProcessInfo[] }
  signal: { input: { id: string; pid: number; signal: NodeJS.Signals }; output: void }
  resizePty: { input: { id: string; pid: number; size: TerminalSize }; output: void }
  listDir: { input: { id: string; path: string }; output: EntryInfo[] }
  stat: { input: { id: string; path: string }; output: EntryInfo }
  mkdir: { input: { id: string; path: string; parents: boolean }; output: void }
  remove: { input: { id: string; path: string; recursive: boolean }; output: void }
  rename: { input: { id: string; from: string; to: string }; output: void }
  updateNetwork: { input: { id: string; egress: EgressPolicy }; output: void }
  'snapshots.take': { input: { sandboxId: string; req: { label?: string } }; output: AgentSnapshot }
  'snapshots.get': { input: { id: string }; output: AgentSnapshot }
  'snapshots.list': { input: null; output: AgentSnapshot[] }
  'snapshots.remove': { input: { id: string }; output: void }
  'golden.promote': { input: { name: string; snapshotId: string; start?: TemplateStart }; output: TemplateInfo }
  'golden.rollback': { input: { name: string }; output: TemplateInfo }
  'golden.standingOn': { input: { snapshotId: string }; output: string[] }
}

/** An exec request as it crosses the link: stdin in base64. */
export type WireExecRequest = Omit<AgentExecRequest, 'stdin'> & { stdin?: string }

/**
 * Calls answered on a Data stream of their own. `exec` and `follow` send exec events (json
 * frames; an exec's first frame is `{ pid }`), `readFile` sends chunks, `writeFile` and
 * `writeStdin` receive chunks up to an end frame. `connect` is a TCP connection into the sandbox:
 * a json frame `{}` once it is open, then chunks both ways; the server's end frame half-closes it.
 * Every one ends with the agent's end frame.
 */
export interface LinkData {
  exec: { id: string; req: WireExecRequest }
  follow: { id: string; pid: number }
  readFile: { id: string; path: string }
  writeFile: { id: string; path: string }
  writeStdin: { id: string; pid: number; close: boolean; hasData: boolean }
  connect: { id: string; port: number }
}

/** Names of the unary calls. */
export type LinkUnaryName = keyof LinkUnary
/** Names of the Data calls. */
export type LinkDataName = keyof LinkData

/** Every unary call, listed at run time (the agent checks a request's kind against it). */
export const linkUnaryNames = [
  'templates', 'create', 'destroy', 'list', 'pause', 'resume', 'stats', 'statsMany', 'wait', 'processes', 'signal', 'resizePty',
  'listDir', 'stat', 'mkdir', 'remove', 'rename', 'updateNetwork',
  'snapshots.take', 'snapshots.get', 'snapshots.list', 'snapshots.remove',
  'golden.promote', 'golden.rollback', 'golden.standingOn',
] as const satisfies readonly LinkUnaryName[]

/** Every Data call, listed at run time. */
export const linkDataNames = ['exec', 'follow', 'readFile', 'writeFile', 'writeStdin', 'connect'] as const satisfies readonly LinkDataName[]

// Both lists name every call of their table: a call added to a table and not here fails to compile.
type Unlisted<T, L extends readonly unknown[]> = Exclude<keyof T, L[number]>
const everyUnaryListed: [Unlisted<LinkUnary, typeof linkUnaryNames>] extends [never] ? true : false = true
const everyDataListed: [Unlisted<LinkData, typeof linkDataNames>] extends [never] ? true : false = true
void everyUnaryListed
void everyDataListed

/** Is `kind` a unary call of the link? */
export function isLinkUnary(kind: string): kind is LinkUnaryName {
  return (linkUnaryNames as readonly string[]).includes(kind)
}

/** Is `kind` a Data call of the link? */
export function isLinkData(kind: string): kind is LinkDataName {
  return (linkDataNames as readonly string[]).includes(kind)
}

/** An exec request off the wire: stdin decoded from base64. */
export function fromWireExec(req: WireExecRequest): AgentExecRequest {
  return { ...req, stdin: req.stdin ? Buffer.from(req.stdin, 'base64') : undefined }
}

/** An exec request for the wire: stdin in base64. */
export function toWireExec(req: AgentExecRequest): WireExecRequest {
  return { ...req, stdin: req.stdin ? Buffer.from(req.stdin).toString('base64') : undefined }
}
