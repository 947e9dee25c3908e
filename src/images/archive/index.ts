/** Images from archives: `docker save` tars and OCI image layout tars. */
export { openImageArchive, type ImageArchiveOptions } from './open-image-archive.js'
export { defaultMaxArchiveBytes, normalizeEntryName } from './archive-entries.js'
