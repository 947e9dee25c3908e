/**
 * The Sandstorm SDK: `import { Sandbox } from '@sandstorm/sdk'`. Runs wherever fetch and web streams
 * do (Node, Bun, Deno, browsers); what needs Node (port forwarding, paths) is in `@sandstorm/sdk/node`.
 */
export { Sandbox, type SandboxCreateOptions, type SandboxListOptions, type SandboxListPage, type SandboxListPageOptions, type SandboxMetricsOptions, type SandboxForkOptions, type SandboxKillOptions, type SandboxNetworkOptions } from './sandbox.js'
export { listSnapshots, getSnapshot, deleteSnapshot } from './snapshots.js'
export { Commands, type CommandRunOptions, type CommandConnectOptions } from './commands.js'
export { CommandHandle, type ProcessSignal } from './command-handle.js'
export type { CommandResult } from './command-result.js'
export { Pty, PtyHandle, type PtySize, type PtyCreateOptions, type PtyConnectOptions, type PtySocketOptions, type PtySocketRequest } from './pty.js'
export { terminalLimits } from './wire/terminal-protocol.js'
export type { OutputHandlers } from './exec-stream.js'
export { Files, type FileReadOptions, type WriteEntry, type WriteInfo, type RemoveOptions } from './files.js'
export type { WriteData } from './upload-body.js'
export { buildTemplate, deleteTemplate, pruneTemplateLayers, type BuildTemplateOptions } from './image-templates.js'
export { buildGoldenTemplate, failedStepOf, listTemplates, promoteTemplate, rollbackTemplate, type BuildGoldenTemplateOptions, type GoldenBuildRequest } from './templates.js'
export { listAgents, listCommandLogs, removeAgent, rotateJoinToken } from './fleet.js'
export { setPool, listPools, deletePool, waitForPool, type SetPoolOptions, type WaitForPoolOptions } from './pools.js'
export { defaultApiUrl, defaultApiKeyPath, defaultRequestTimeoutMs, resolveConnection, type ConnectionOptions, type Connection, type Environment } from './connection.js'
// The request layer under every call, for routes the SDK has no method for (the web console's raw calls).
export { createApiClient, errorFromBody, type ApiClient, type ApiRequest, type RequestBody } from './http-client.js'
export { parseNdjson } from './ndjson.js'
export {
  SandstormSdkError,
  NotFoundError,
  AuthenticationError,
  InvalidArgumentError,
  ConflictError,
  FileTooLargeError,
  TimeoutError,
  RateLimitError,
  UnavailableError,
  ConnectionError,
  AbortError,
  CommandExitError,
  type SdkErrorCode,
} from './errors.js'
export type { SandboxStart, SandboxStartSource, GoldenOrigin, SandboxIngress, AgentInfo, AgentMetrics, CommandLogEntry, PoolInfo, ErrorCode } from './wire/index.js'
export type { SnapshotInfo, BuildTemplateRequest, TemplateBuildEvent, FailedBuildStep } from './wire/index.js'
export type { RegistryAuth, TemplateSource, TemplateImageConfig } from './wire/index.js'
export type { NetworkUpdateRequest, SandboxNetwork, RuntimeName, SandboxInfo, SandboxListOrder, SandboxMetrics, SandboxState, ProcessInfo, ProcessResult, EntryInfo, EntryType, TemplateInfo, TemplateStart, TemplateStartInput, ExecEvent } from './wire/index.js'
