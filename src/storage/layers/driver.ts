/**
 * How a storage driver turns writable dirs into read-only layers and back. Two implementations
 * (overlay: copies; btrfs: subvolume snapshots) run one shared contract suite.
 */
import type { CallOptions } from '../../shared/index.js'

/** The name of a storage driver. */
export type StorageDriverName = 'overlay' | 'btrfs'

/** A layer that a new writable dir starts from. */
export interface LayerSource {
  /** The layer's root, as `capture` made it. */
  dir: string
  /** Roots of the layers it stands on, topmost first, template excluded. */
  chain: string[]
}

/** The overlay dirs of a sandbox's root. */
export interface WritableDirs {
  upperDir: string
  /** Overlayfs scratch dir, on the same filesystem (and btrfs subvolume) as upperDir. */
  workDir: string
  /** Layer dirs to stack under upperDir, topmost first, template excluded. */
  lowerDirs: string[]
}

/** How a writable dir is made. */
export interface WritableOptions extends CallOptions {
  /** The most the sandbox may write into it, in MiB; none when absent. */
  diskMiB?: number
  /**
   * Whether its disk may be a spare made ahead: the spares take the size of the last disk asked
   * for, so a one-off size (a build step's) is made on the spot instead. @default true
   */
  spare?: boolean
}

/** How much of its quota a writable dir uses. */
export interface DiskUsage {
  usedBytes: number
  limitBytes: number
}

/** Creates, captures and removes the trees of a layer store. */
export interface StorageDriver {
  readonly name: StorageDriverName
  /** Whether a capture copies the writable dir's data (overlay) rather than sharing its blocks (a btrfs snapshot). */
  readonly capturesByCopy: boolean
  /**
   * Makes a sandbox's writable dir at `path` (which must not exist), starting from `from` when
   * given: overlay stacks the source layer and its chain under an empty upper dir; btrfs starts
   * the dir as a writable snapshot of the layer and stacks only the layer's own chain. With
   * `diskMiB`, a write past the quota fails with ENOSPC (overlay: an ext4 image of that size
   * mounted at `path`; btrfs: an exclusive qgroup limit on the subvolume).
   */
  makeWritable(path: string, from: LayerSource | null, options?: WritableOptions): Promise<WritableDirs>
  /** What a writable dir made with a quota uses of it; null without one. */
  usage(path: string): Promise<DiskUsage | null>
  /**
   * Turns a frozen writable dir into a new read-only layer at `layerDir` (which must not exist),
   * keeping whiteouts, opaque dirs, owners, modes and xattrs, and following no symlink inside.
   */
  capture(writablePath: string, layerDir: string, options?: CallOptions): Promise<void>
  /** The dir of a layer to give overlay as a `lowerdir`. */
  lowerDirOf(layerDir: string): string
  /** Removes a writable dir or a layer made by this driver. Safe to call twice. */
  remove(path: string): Promise<void>
  /**
   * Makes a fresh upper and work dir for the writable dir at `path` (in use by a sandbox), over
   * `from`, on the same filesystem and quota: the sandbox's root is switched to them, then
   * `commit` puts them in the place of the old ones (whose removal runs after it answers), or
   * `abort` removes them. Optional: overlay only (a btrfs writable dir is a snapshot of its layer).
   */
  renewWritable?(path: string, from: LayerSource | null): Promise<RenewedWritable>
  /** Stops what the driver runs in the background (overlay: spare disks, which it removes). */
  close?(): Promise<void>
}

/** A writable dir's next upper and work dirs, made beside the ones in use. */
export interface RenewedWritable {
  dirs: WritableDirs
  commit(): Promise<void>
  abort(): Promise<void>
}
