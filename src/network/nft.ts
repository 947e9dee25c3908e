/**
 * The agent's line to nftables: one resident helper (native/nft-apply.c, libnftables) that
 * applies each ruleset it is given as one transaction, in the order given. A helper that dies is
 * started again on the next change.
 */
import { fileURLToPath } from 'node:url'
import { createFramedHelper } from '../shared/framed-helper.js'
import { SandstormError, type Logger } from '../shared/index.js'

/** The helper's binary, built by `npm run build`. */
export const nftHelperPath = fileURLToPath(new URL('../../native/nft-apply', import.meta.url))

/** Applies rulesets atomically. */
export interface Nft {
  /** Applies `script` (as `nft -f` reads it) as one transaction; resolves with nft's output. */
  apply(script: string): Promise<string>
  /** Stops the helper; later calls start it again. */
  close(): void
}

/** A client of the helper, started on first use. */
export function createNft(logger: Logger): Nft {
  const helper = createFramedHelper(nftHelperPath, 'nftables')
  return {
    async apply(script) {
      const answer = await helper.call(Buffer.from(script, 'utf8')).catch((err: unknown) => {
        logger.error({ err }, 'the nftables helper exited with a change pending')
        throw err
      })
      if (answer.ok) return answer.text
      throw new SandstormError('internal', `nftables refused a change: ${answer.text.trim().split('\n')[0]}`, { cause: new Error(`${answer.text}\n--- script ---\n${script}`) })
    },
    close: () => helper.close(),
  }
}
