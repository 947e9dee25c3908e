/**
 * The console's one door to Sandstorm's public HTTP API, with the API key the user signed in with.
 *
 * It uses the SDK's fetch-only request layer (auth header, deadlines, wire errors turned into SDK
 * errors carrying the API's message), from the SDK package's browser-clean main entry.
 */
import { AuthenticationError, createApiClient, parseNdjson, resolveConnection, SandstormSdkError, type AgentInfo, type ApiClient, type Connection, type PoolInfo } from '@sandstorm/sdk'
import type { EntryInfo, SandboxInfo, SandboxMetrics, SnapshotInfo, TemplateBuildEvent, TemplateInfo } from '@sandstorm/sdk/wire'

export type { AgentInfo, EntryInfo, PoolInfo, SandboxInfo, SandboxMetrics, SnapshotInfo, TemplateBuildEvent, TemplateInfo }

const keyItem = 'sandstorm.apiKey'

/** The key signed in with in this tab, if any (sessionStorage: gone with the tab). */
export function storedKey(): string | null {
  return sessionStorage.getItem(keyItem)
}

/** Keeps the key for this tab. */
export function storeKey(key: string): void {
  sessionStorage.setItem(keyItem, key)
}

/** Forgets the key. */
export function forgetKey(): void {
  sessionStorage.removeItem(keyItem)
}

/** A create from the console's form. */
export interface CreateRequest {
  template: string
  runtime?: string
  timeoutMs?: number
  labels?: Record<string, string>
}

/** A template build: from a registry image, or steps run on a template. */
export type BuildRequest = { image: string } | { from: string; steps: string[] }

/** Every call the console makes. Each rejects with an SDK error whose message is the API's. */
export interface ConsoleApi {
  readonly key: string
  listSandboxes(labels?: string[]): Promise<SandboxInfo[]>
  getSandbox(id: string): Promise<SandboxInfo>
  createSandbox(req: CreateRequest): Promise<SandboxInfo>
  killSandbox(id: string): Promise<void>
  metrics(id: string, sinceMs: number): Promise<SandboxMetrics[]>
  listDir(id: string, path: string): Promise<EntryInfo[]>
  download(id: string, path: string): Promise<Blob>
  upload(id: string, path: string, data: Blob): Promise<void>
  takeSnapshot(id: string, label?: string): Promise<SnapshotInfo>
  listSnapshots(): Promise<SnapshotInfo[]>
  fork(snapshotId: string): Promise<SandboxInfo[]>
  restore(sandboxId: string, snapshotId: string): Promise<SandboxInfo>
  listTemplates(): Promise<TemplateInfo[]>
  /** Yields the build's events as they come; aborting the signal cancels the build. */
  buildTemplate(name: string, req: BuildRequest, signal: AbortSignal): AsyncGenerator<TemplateBuildEvent>
  listPools(): Promise<PoolInfo[]>
  setPool(template: string, min: number, max: number): Promise<PoolInfo>
  deletePool(template: string): Promise<void>
  listAgents(): Promise<AgentInfo[]>
}

/**
 * A client with `key` against the server that served the console. `onUnauthenticated` is called
 * when the server refuses the key (a 401), so that the app can go back to the sign-in.
 */
export function createConsoleApi(key: string, onUnauthenticated: (err: SandstormSdkError) => void): ConsoleApi {
  const connection: Connection = resolveConnection({ apiUrl: location.origin, apiKey: key, requestTimeoutMs: 30_000 })
  const client: ApiClient = createApiClient(connection)
  /** Every call goes through here, so that a refused key is noticed wherever it happens. */
  const guard = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call()
    } catch (err) {
      if (err instanceof AuthenticationError && err.code === 'unauthenticated') onUnauthenticated(err)
      throw err
    }
  }
  const sandbox = (id: string): string => `/v1/sandboxes/${encodeURIComponent(id)}`

  return {
    key,
    listSandboxes: (labels = []) => guard(() => client.json<SandboxInfo[]>({ method: 'GET', path: '/v1/sandboxes', query: { label: labels } })),
    getSandbox: (id) => guard(() => client.json<SandboxInfo>({ method: 'GET', path: sandbox(id) })),
    createSandbox: (req) => guard(() => client.json<SandboxInfo>({ method: 'POST', path: '/v1/sandboxes', json: req })),
    killSandbox: (id) => guard(() => client.send({ method: 'DELETE', path: sandbox(id) })),
    metrics: (id, sinceMs) =>
      guard(() => client.json<SandboxMetrics[]>({ method: 'GET', path: `${sandbox(id)}/metrics`, query: { start: new Date(sinceMs).toISOString() } })),
    listDir: (id, path) => guard(() => client.json<EntryInfo[]>({ method: 'GET', path: `${sandbox(id)}/fs/list`, query: { path } })),
    download: (id, path) =>
      guard(async () => new Response(await client.stream({ method: 'GET', path: `${sandbox(id)}/files`, query: { path } })).blob()),
    upload: (id, path, data) => guard(() => client.send({ method: 'PUT', path: `${sandbox(id)}/files`, query: { path }, body: data })),
    takeSnapshot: (id, label) =>
      guard(() => client.json<SnapshotInfo>({ method: 'POST', path: `${sandbox(id)}/snapshots`, json: label ? { label } : {} })),
    listSnapshots: () => guard(() => client.json<SnapshotInfo[]>({ method: 'GET', path: '/v1/snapshots' })),
    fork: (snapshotId) =>
      guard(() => client.json<SandboxInfo[]>({ method: 'POST', path: `/v1/snapshots/${encodeURIComponent(snapshotId)}/fork`, json: { count: 1 } })),
    restore: (sandboxId, snapshotId) => guard(() => client.json<SandboxInfo>({ method: 'POST', path: `${sandbox(sandboxId)}/restore`, json: { snapshotId } })),
    listTemplates: () => guard(() => client.json<TemplateInfo[]>({ method: 'GET', path: '/v1/templates' })),
    async *buildTemplate(name, req, signal) {
      const body = await guard(() => client.stream({ method: 'POST', path: `/v1/templates/${encodeURIComponent(name)}/build`, json: req, signal }))
      yield* parseNdjson<TemplateBuildEvent>(body)
    },
    listPools: () => guard(() => client.json<PoolInfo[]>({ method: 'GET', path: '/v1/pools' })),
    setPool: (template, min, max) => guard(() => client.json<PoolInfo>({ method: 'PUT', path: `/v1/pools/${encodeURIComponent(template)}`, json: { min, max } })),
    deletePool: (template) => guard(() => client.send({ method: 'DELETE', path: `/v1/pools/${encodeURIComponent(template)}` })),
    listAgents: () => guard(async () => (await client.json<{ agents: AgentInfo[] }>({ method: 'GET', path: '/v1/agents' })).agents),
  }
}

/** Checks a key before keeping it: resolves, or rejects with the API's answer (a 401 for a wrong key). */
export async function checkKey(key: string): Promise<void> {
  const client = createApiClient(resolveConnection({ apiUrl: location.origin, apiKey: key, requestTimeoutMs: 30_000 }))
  await client.json<unknown>({ method: 'GET', path: '/v1/sandboxes', query: { limit: '1' } })
}

/** The message to show for anything a call threw: the API's own message when it sent one. */
export function messageOf(err: unknown): string {
  if (err instanceof SandstormSdkError) return err.message
  return err instanceof Error ? err.message : String(err)
}

/** A ws:// or wss:// URL of this server for an API path. */
export function wsUrl(path: string): string {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${path}`
}
