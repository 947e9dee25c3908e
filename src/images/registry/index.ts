/** Pulling images from registries over the OCI distribution API, and the checks shared with archives. */
export { openRegistryImage } from './open-registry-image.js'
export { createRegistryClient, type RegistryClient, type RegistryClientOptions } from './registry-client.js'
export { verifyingStream, digestOf } from './verifying-stream.js'
export { credentialsFromDockerConfig, defaultDockerConfigPath } from './docker-config.js'
export { parseManifestDocument, pickPlatform, manifestMediaTypes, manifestAccept, layerMediaTypes, wantedPlatform, type Descriptor, type ManifestDocument } from './manifest.js'
export { parseAuthChallenge, type AuthChallenge } from './www-authenticate.js'
export { parseImageReference, isLoopbackHost, type ImageReference } from '../reference.js'
export { imageDefaultsOf, type ImageConfigSummary } from '../image-config.js'
