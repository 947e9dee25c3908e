/*
 * A resident nftables helper of the agent: it applies rulesets through libnftables (the library
 * the nft command is built on) without a process start per change, which costs about 10 ms of
 * nft's own start-up each time. Each request is one transaction: the kernel takes all of it or
 * none of it.
 *
 * Protocol on stdin/stdout, frames as framed-io.h reads and writes them:
 *   request:  the ruleset text, as `nft -f` reads it
 *   reply:    one status byte ('0' done, '1' refused) and then nft's output or its error text
 * It exits when stdin ends. Run on the host only, by root; it takes no other input.
 */
#include <nftables/libnftables.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framed-io.h"

#define MAX_REQUEST (16u << 20)

int main(void) {
  struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!nft || nft_ctx_buffer_output(nft) || nft_ctx_buffer_error(nft)) {
    fprintf(stderr, "nft-apply: could not open libnftables\n");
    return 1;
  }
  for (;;) {
    uint32_t len;
    if (read_request_length(&len)) break;
    if (len > MAX_REQUEST) {
      fprintf(stderr, "nft-apply: a request of %u bytes is over the limit\n", len);
      return 1;
    }
    char *script = malloc((size_t)len + 1);
    if (!script || read_full(0, script, len)) return 1;
    script[len] = '\0';
    int failed = nft_run_cmd_from_buffer(nft, script);
    free(script);
    // Both are read every time: reading a buffer empties it for the next request.
    const char *output = nft_ctx_get_output_buffer(nft);
    const char *error = nft_ctx_get_error_buffer(nft);
    const char *text = failed ? error : output;
    if (reply(failed ? '1' : '0', text ? text : "")) break;
  }
  nft_ctx_free(nft);
  return 0;
}
