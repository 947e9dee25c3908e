/** Image layers: unpacking untrusted tars safely, and the content-addressed store of unpacked layers. */
export { decompressed, declaredCompression, sniffCompression, type LayerCompression } from './decompress.js'
export { unpackTar, defaultMaxEntries, defaultMaxLayerBytes, type UnpackTarOptions, type UnpackTarResult } from './unpack-tar.js'
export { defaultMaxHeldPathBytes } from './held-paths.js'
export { keptXattr, normaliseEntryPath } from './tar-entry.js'
export { createImageLayerStore, type ImageLayerStoreOptions } from './layer-store.js'
