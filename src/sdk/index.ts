/** The Sandstorm SDK: `import { Sandbox } from 'sandstorm'`. */
export { Sandbox, type SandboxCreateOptions, type SandboxListOptions, type SandboxListPage, type SandboxListPageOptions, type SandboxMetricsOptions, type SandboxForkOptions, type SandboxNetworkOptions, type SandboxStart } from './sandbox.js'
export type { PortForward, PortForwardOptions } from './ports.js'
export { listSnapshots, getSnapshot, deleteSnapshot } from './snapshots.js'
export { Commands, type CommandRunOptions, type CommandConnectOptions } from './commands.js'
export { CommandHandle, type ProcessSignal } from './command-handle.js'
export type { CommandResult } from './command-result.js'
export { Pty, PtyHandle, type PtySize, type PtyCreateOptions, type PtyConnectOptions, type PtySocketOptions, type PtySocketRequest } from './pty.js'
export type { OutputHandlers } from './exec-stream.js'
export { Files, type FileReadOptions, type WriteEntry, type WriteInfo, type RemoveOptions } from './files.js'
export type { WriteData } from './upload-body.js'
export { buildTemplate, deleteTemplate, pruneTemplateLayers, type BuildTemplateOptions } from './image-templates.js'
export { buildGoldenTemplate, failedStepOf, listTemplates, promoteTemplate, rollbackTemplate, type BuildGoldenTemplateOptions, type GoldenBuildRequest } from './templates.js'
export { listAgents, listCommandLogs, removeAgent, type AgentInfo, type CommandLogEntry } from './fleet.js'
export { setPool, listPools, deletePool, waitForPool, type PoolInfo, type SetPoolOptions, type WaitForPoolOptions } from './pools.js'
export { defaultApiUrl, defaultApiKeyPath, defaultRequestTimeoutMs, type ConnectionOptions } from './connection.js'
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
export type { SnapshotInfo, BuildTemplateRequest, TemplateBuildEvent, FailedBuildStep } from '../shared/index.js'
export type { RegistryAuth, TemplateSource, TemplateImageConfig } from '../shared/index.js'
export type { NetworkUpdateRequest, SandboxNetwork, RuntimeName, SandboxInfo, SandboxListOrder, SandboxMetrics, SandboxState, ProcessInfo, ProcessResult, EntryInfo, EntryType, TemplateInfo, TemplateStart, TemplateStartInput, ExecEvent } from '../shared/index.js'
