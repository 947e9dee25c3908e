/** Snapshot layers: the layer store, its drivers (overlay, btrfs) and squashing. */
export type { StorageDriver, StorageDriverName, LayerSource, WritableDirs, WritableOptions, DiskUsage } from './driver.js'
export { createOverlayDriver } from './overlay-driver.js'
export { createBtrfsDriver, isOnBtrfs } from './btrfs-driver.js'
export { createLayerStore, type LayerStore, type LayerStoreOptions, type LayerRecord, type CaptureHooks } from './layer-store.js'
export { squashLayers } from './squash.js'
export { isWhiteout, opaqueXattr } from './overlay-marks.js'
export { pickStorageDriver } from './pick-driver.js'
export { diskImageDeletions } from './disk-image.js'
