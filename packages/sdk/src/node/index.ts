/**
 * The SDK for Node (and Bun, Deno): everything of `@sandstorm/sdk`, plus what needs Node's net and
 * fs: port forwarding and raw tunnels, and template builds from paths.
 */
export * from '../index.js'
export { buildTemplate, type BuildTemplateOptions } from './build-template.js'
export { connectPort, forwardPort, type PortForward, type PortForwardOptions } from './ports.js'
export { tarDirectory, type TarDirectoryOptions } from './build-context.js'
export { parseDockerignore, type DockerignoreFilter } from './dockerignore.js'
export { splice } from './splice.js'
