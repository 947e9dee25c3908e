/** `sandbox.files`: read, write and manage files inside a sandbox. */
import type { EntryInfo } from './wire/index.js'
import { concatBytes } from './bytes.js'
import type { ConnectionOptions } from './connection.js'
import { NotFoundError } from './errors.js'
import { chunksOf } from './ndjson.js'
import type { SandboxContext } from './sandbox-context.js'
import { isStreamedBody, uploadBodyOf, type WriteData } from './upload-body.js'

/** Options of `files.read`. */
export interface FileReadOptions extends ConnectionOptions {
  /** What to return: a string (UTF-8), the bytes, or a stream for large files. @default 'text' */
  format?: 'text' | 'bytes' | 'stream'
}

/** One file of a `files.write([...])`. */
export interface WriteEntry {
  path: string
  data: WriteData
}

/** A file that was written. */
export interface WriteInfo {
  name: string
  path: string
  type: 'file'
}

/** Options of `files.remove`. */
export interface RemoveOptions extends ConnectionOptions {
  /** Remove a directory and everything in it. @default false */
  recursive?: boolean
}

/** Files of one sandbox. */
export class Files {
  /** @internal Made by Sandbox. */
  constructor(private readonly ctx: SandboxContext) {}

  /** Reads a file as text (the default), bytes, or a stream that must be read to its end or cancelled. */
  read(path: string, options?: FileReadOptions & { format?: 'text' }): Promise<string>
  read(path: string, options: FileReadOptions & { format: 'bytes' }): Promise<Uint8Array>
  read(path: string, options: FileReadOptions & { format: 'stream' }): Promise<ReadableStream<Uint8Array>>
  async read(path: string, options: FileReadOptions = {}): Promise<string | Uint8Array | ReadableStream<Uint8Array>> {
    const stream = await this.ctx.clientFor(options).stream({ method: 'GET', path: this.ctx.path('/files'), query: { path }, signal: options.signal })
    if (options.format === 'stream') return stream
    const chunks: Uint8Array[] = []
    for await (const chunk of chunksOf(stream)) chunks.push(chunk)
    const bytes = concatBytes(chunks)
    if (options.format === 'bytes') return bytes
    // ignoreBOM keeps a leading BOM in the text, as the file holds it.
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes)
  }

  /**
   * Writes a file, creating missing parent directories as the server does. Streams, async
   * iterables and Blobs are uploaded as they are read; `write([{ path, data }, ...])` writes several.
   */
  write(path: string, data: WriteData, options?: ConnectionOptions): Promise<WriteInfo>
  write(files: WriteEntry[], options?: ConnectionOptions): Promise<WriteInfo[]>
  async write(
    pathOrFiles: string | WriteEntry[],
    dataOrOptions?: WriteData | ConnectionOptions,
    maybeOptions: ConnectionOptions = {},
  ): Promise<WriteInfo | WriteInfo[]> {
    if (Array.isArray(pathOrFiles)) {
      const options = (dataOrOptions ?? {}) as ConnectionOptions
      const written: WriteInfo[] = []
      for (const entry of pathOrFiles) written.push(await this.writeOne(entry.path, entry.data, options))
      return written
    }
    return this.writeOne(pathOrFiles, dataOrOptions as WriteData, maybeOptions)
  }

  /** Entries of a directory. */
  list(path: string, options: ConnectionOptions = {}): Promise<EntryInfo[]> {
    return this.ctx.clientFor(options).json<EntryInfo[]>({ method: 'GET', path: this.ctx.path('/fs/list'), query: { path }, signal: options.signal })
  }

  /** Type, size, mode, owner and time of one entry; throws NotFoundError if there is none. */
  getInfo(path: string, options: ConnectionOptions = {}): Promise<EntryInfo> {
    return this.ctx.clientFor(options).json<EntryInfo>({ method: 'GET', path: this.ctx.path('/fs/stat'), query: { path }, signal: options.signal })
  }

  /** Whether anything exists at the path. */
  async exists(path: string, options: ConnectionOptions = {}): Promise<boolean> {
    try {
      await this.getInfo(path, options)
      return true
    } catch (err) {
      if (err instanceof NotFoundError) return false
      throw err
    }
  }

  /** Makes a directory and its missing parents. */
  async makeDir(path: string, options: ConnectionOptions = {}): Promise<void> {
    await this.post('/fs/mkdir', { path, parents: true }, options)
  }

  /** Removes a file, or a directory (non-empty ones only with `recursive`). */
  async remove(path: string, options: RemoveOptions = {}): Promise<void> {
    await this.post('/fs/remove', { path, recursive: options.recursive ?? false }, options)
  }

  /** Renames or moves an entry. */
  async rename(from: string, to: string, options: ConnectionOptions = {}): Promise<void> {
    await this.post('/fs/rename', { from, to }, options)
  }

  private async writeOne(path: string, data: WriteData, options: ConnectionOptions): Promise<WriteInfo> {
    const body = uploadBodyOf(data)
    // The answer to a streamed upload starts only after the last byte, so unless the caller set
    // one, no request deadline applies: a long upload is not a silent server.
    const conn = isStreamedBody(body) && options.requestTimeoutMs === undefined ? { ...options, requestTimeoutMs: 0 } : options
    await this.ctx.clientFor(conn).send({ method: 'PUT', path: this.ctx.path('/files'), query: { path }, body, signal: options.signal })
    return { name: path.split('/').filter(Boolean).pop() ?? path, path, type: 'file' }
  }

  private async post(rest: string, json: unknown, options: ConnectionOptions): Promise<void> {
    await this.ctx.clientFor(options).send({ method: 'POST', path: this.ctx.path(rest), json, signal: options.signal })
  }
}
