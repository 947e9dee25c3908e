/** The layer store: how a sandbox's root is stacked from read-only layers and its own writable one. */
export { mountOverlay, overlayMountData, overlayVolatile, kernelAtLeast, unmount, isMounted, type OverlayOptions } from './overlay/overlay.js'
export * from './layers/index.js'
