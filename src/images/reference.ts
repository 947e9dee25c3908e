/** Image references in Docker's grammar: `[registry[:port]/]path[:tag][@sha256:hex]`. */
import { SandstormError } from '../shared/index.js'
import type { Digest } from './contracts.js'

/** An image reference, resolved to the registry to ask and the repository there. */
export interface ImageReference {
  /** The registry as written (`docker.io` when none was): the key of its credentials. */
  registry: string
  /** The host (and port) whose API serves it: `registry-1.docker.io` for `docker.io`. */
  apiHost: string
  /** The repository path, with `library/` for Docker Hub's official images. */
  repository: string
  /** The tag: as given, else `latest` when no digest was given either. */
  tag?: string
  /** The manifest digest, when pinned. */
  digest?: Digest
  /** The reference in full: `registry/repository[:tag][@digest]`. */
  canonical: string
}

const dockerHub = 'docker.io'
const dockerHubApi = 'registry-1.docker.io'
const expected = 'expected [registry[:port]/]name[:tag][@sha256:digest]'

// The grammar of github.com/distribution/reference, with sha256 as the only digest.
const component = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const domainPart = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const domain = new RegExp(`^(?:${domainPart}(?:\\.${domainPart})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]{1,5})?$`)
const tagPattern = /^[\w][\w.-]{0,127}$/
const digestPattern = /^sha256:[a-f0-9]{64}$/
const maxNameLength = 255

/** Parses `text` as an image reference; refuses anything else with `invalid_argument`. */
export function parseImageReference(text: string): ImageReference {
  const refuse = (what: string): never => {
    throw new SandstormError('invalid_argument', `image reference ${JSON.stringify(text)}: ${expected}, got ${what}`)
  }
  if (text.length === 0) refuse('an empty string')
  if (/\s/.test(text)) refuse('white space')

  let rest = text
  let digest: Digest | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    const d = rest.slice(at + 1)
    if (!digestPattern.test(d)) refuse(`digest ${JSON.stringify(d)} (only sha256:<64 lowercase hex> is accepted)`)
    digest = d as Digest
    rest = rest.slice(0, at)
  }

  let tag: string | undefined
  const lastSlash = rest.lastIndexOf('/')
  const colon = rest.lastIndexOf(':')
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1)
    if (!tagPattern.test(tag)) refuse(`tag ${JSON.stringify(tag)} (a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -)`)
    rest = rest.slice(0, colon)
  }
  if (rest.length === 0) refuse('no name')

  // Docker's rule: the first part is a registry when it has a '.' or ':', is localhost, or has capitals.
  let registry = dockerHub
  let path = rest
  const slash = rest.indexOf('/')
  if (slash !== -1) {
    const first = rest.slice(0, slash)
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      if (!domain.test(first)) refuse(`registry ${JSON.stringify(first)} (expected a host name or address, with an optional :port)`)
      registry = first
      path = rest.slice(slash + 1)
    }
  }
  if (registry === 'index.docker.io') registry = dockerHub

  const parts = path.split('/')
  for (const part of parts) {
    if (!component.test(part)) {
      refuse(`path component ${JSON.stringify(part)} (lowercase letters and digits, separated by '.', '_', '__' or '-')`)
    }
  }
  if (registry === dockerHub && parts.length === 1) path = `library/${path}`
  if (registry.length + 1 + path.length > maxNameLength) refuse(`a name of ${registry.length + 1 + path.length} characters (at most ${maxNameLength})`)

  if (tag === undefined && digest === undefined) tag = 'latest'
  const canonical = `${registry}/${path}${tag !== undefined ? `:${tag}` : ''}${digest !== undefined ? `@${digest}` : ''}`
  return { registry, apiHost: registry === dockerHub ? dockerHubApi : registry, repository: path, tag, digest, canonical }
}

/** Is `host` (`name[:port]`) this machine: 127.0.0.0/8, localhost or [::1]? */
export function isLoopbackHost(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '')
  return name === 'localhost' || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name)
}
