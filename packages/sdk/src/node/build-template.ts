/** `buildTemplate` with paths: an image archive file, or a build context directory sent as a tar. */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { buildTemplate as buildTemplateFromBodies, type BuildTemplateOptions as PortableOptions } from '../image-templates.js'
import type { TemplateInfo } from '../wire/index.js'
import { tarDirectory } from './build-context.js'

/** As the portable options, where `imageArchive` and `context` may also be paths on this machine. */
export interface BuildTemplateOptions extends Omit<PortableOptions, 'imageArchive' | 'context'> {
  /** A `docker save` tar or an OCI image layout tar: a path, or its bytes. */
  imageArchive?: string | PortableOptions['imageArchive']
  /** The build context of a Dockerfile build: a directory (sent as a tar), or a tar's bytes. */
  context?: string | PortableOptions['context']
}

/** Builds a new version of template `name` from an image, an image archive or a Dockerfile. */
export async function buildTemplate(name: string, options: BuildTemplateOptions): Promise<{ template: TemplateInfo }> {
  const { imageArchive, context, ...rest } = options
  const portable: PortableOptions = rest
  if (typeof imageArchive === 'string') {
    // Fails here, before the request, when the file is missing.
    await stat(imageArchive)
    portable.imageArchive = Readable.toWeb(createReadStream(imageArchive)) as unknown as ReadableStream<Uint8Array>
  } else if (imageArchive !== undefined) {
    portable.imageArchive = imageArchive
  }
  if (typeof context === 'string') portable.context = tarDirectory(context, { dockerfile: options.dockerfile ?? 'Dockerfile' })
  else if (context !== undefined) portable.context = context
  return buildTemplateFromBodies(name, portable)
}
