import { SandstormError } from '../shared/index.js'

/** What a template name looks like; names become directory names, so nothing else is accepted. */
export const templateNamePattern = /^[a-z0-9][a-z0-9._-]{0,62}$/

/** Throws invalid_argument unless `name` is a well-formed template name. */
export function checkTemplateName(name: string): void {
  if (!templateNamePattern.test(name)) {
    throw new SandstormError(
      'invalid_argument',
      `invalid template name ${JSON.stringify(name)}: expected 1-63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit`,
    )
  }
}
