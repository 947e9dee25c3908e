/**
 * The paths an unpack keeps until it ends (its directories, whiteouts and opaque marks), in sets
 * that share one bound on their bytes: a gzip of tens of MB can name a million directories of
 * 4 KB paths, gigabytes held at once, past Node's heap.
 */
import { SandstormError } from '../../shared/index.js'

/** Default of UnpackTarOptions.maxHeldPathBytes: 256 MiB. */
export const defaultMaxHeldPathBytes = 256 * 1024 ** 2

/** The bound that several PathSets share. */
export class HeldPathBudget {
  private bytes = 0

  /** `label` names the tar in messages ("layer sha256:…"). */
  constructor(
    private readonly maxBytes: number,
    private readonly label: string,
  ) {}

  /** A new empty set of paths counted against this bound. */
  newSet(): PathSet {
    return new PathSet(this)
  }

  /** Counts `path` in: `resource_exhausted` past the bound. */
  take(path: string): void {
    this.bytes += Buffer.byteLength(path)
    if (this.bytes > this.maxBytes) {
      throw new SandstormError('resource_exhausted', `${this.label} holds more than ${this.maxBytes} bytes of directory and whiteout paths (the limit, maxHeldPathBytes)`)
    }
  }

  /** Counts `path` out. */
  give(path: string): void {
    this.bytes -= Buffer.byteLength(path)
  }
}

/** A set of paths whose bytes count against a HeldPathBudget. */
export class PathSet implements Iterable<string> {
  private readonly paths = new Set<string>()

  constructor(private readonly budget: HeldPathBudget) {}

  has(path: string): boolean {
    return this.paths.has(path)
  }

  get size(): number {
    return this.paths.size
  }

  /** Adds `path` (once); `resource_exhausted` when the budget has no room for it. */
  add(path: string): void {
    if (this.paths.has(path)) return
    this.budget.take(path)
    this.paths.add(path)
  }

  delete(path: string): boolean {
    if (!this.paths.delete(path)) return false
    this.budget.give(path)
    return true
  }

  [Symbol.iterator](): Iterator<string> {
    return this.paths[Symbol.iterator]()
  }
}
