#!/usr/bin/env bash
# Prepares this host for Sandstorm: Debian packages, node modules, the build, the default templates
# and the `sandstorm` command. Run as root. Idempotent: a second run only rebuilds the TypeScript,
# and prints nothing unless something had to be done.
set -euo pipefail

# Work from the repository root wherever this is called from (npm, CI, a shell elsewhere).
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
REPO=$(pwd)
DATA_DIR=${SANDSTORM_DATA_DIR:-/var/lib/sandstorm}
export DEBIAN_FRONTEND=noninteractive

# Debian packages the runtimes need. busybox-static goes into sandboxes, and gcc with libc6-dev
# compiles their static init (native/sandbox-init.c) during the build, libseccomp-dev the helper
# that compiles their seccomp filter once per agent (native/seccomp-bpf.c); debootstrap
# builds the debian template. btrfs-progs runs the btrfs layer store; attr (getfattr, setfattr)
# reads and writes overlay's opaque-dir marks when snapshot layers are squashed.
# qemu-system-x86 and qemu-utils run the qemu runtime (microvm guests and their qcow2 disks).
# e2fsprogs formats and resizes the ext4 images that hold disk quotas (runc writable layers, qemu roots).
# nftables holds the sandboxes' network policy; libnftables-dev builds the agent's resident helper
# that applies it (native/nft-apply.c); conntrack deletes a removed sandbox's tracked connections. curl is the network benchmark's outside client.
# chromium (headless, driven over the DevTools protocol) runs the web console's browser tests; fonts-dejavu-core gives its screenshots a font.
PACKAGES=(runc e2fsprogs gcc libc6-dev libseccomp-dev busybox-static debootstrap iproute2 ca-certificates btrfs-progs attr qemu-system-x86 qemu-utils nftables libnftables-dev conntrack curl zstd skopeo umoci docker-registry apache2-utils qemu-guest-agent chromium fonts-dejavu-core python3)

say() { printf 'setup: %s\n' "$*"; }
die() {
  printf 'setup: %s\n' "$*" >&2
  exit 1
}

# Runs a command with its output kept in a log file, shown only if it fails.
quietly() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    die "failed: $*"
  fi
  rm -f "$log"
}

[ "$(id -u)" -eq 0 ] || die "run as root: it installs Debian packages and /usr/local/bin/sandstorm"
command -v node >/dev/null || die "node (version 20 or newer) is not installed; install it, then run this again"
command -v npm >/dev/null || die "npm is not installed; install it with node, then run this again"

# 1. Debian packages, installed only when missing (dpkg -s also reports removed packages whose
# config files remain, so the status field is checked instead).
missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  quietly apt-get update
  quietly apt-get install -y --no-install-recommends "${missing[@]}"
fi

# 2. Node modules when missing or older than the lock file; then the build (tsc is quick).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing node modules (npm ci)"
  quietly npm ci --no-audit --no-fund
fi
quietly npm run --silent build

# 3. The default templates. The layout check makes a second run quick and silent; the CLI is
# itself a no-op for a template that exists.
CLI="$REPO/dist/src/cli/main.js"
[ -f "$CLI" ] || die "the build did not produce $CLI"
# base is E2B's base (bash, git, curl, sudo, python); code-interpreter-v1 adds Jupyter's kernel,
# matplotlib, pandas and numpy, and the code interpreter server.
for template in debian host base code-interpreter-v1; do
  if [ ! -f "$DATA_DIR/templates/$template/current/template.json" ]; then
    case "$template" in
      debian) say "building template debian with debootstrap (about a minute; set SANDSTORM_DEBIAN_MIRROR for a nearer mirror)" ;;
      base) say "building template base with debootstrap (about two minutes: bash, git, curl, sudo, python)" ;;
      code-interpreter-v1) say "building template code-interpreter-v1 with debootstrap and apt-get (five to fifteen minutes, about 230 MB to download: Jupyter, matplotlib, pandas, numpy)" ;;
      *) say "building template $template" ;;
    esac
    # Not quiet: the build prints its progress (debootstrap's steps) as it goes.
    node "$CLI" template build "$template" --data-dir "$DATA_DIR" || die "building template $template failed"
  fi
done

# 3a. code-interpreter-v1 holds the copy of the code interpreter server (src/templates/code-interpreter)
# made when it was built, and its template.json the fingerprint of that copy. One built from other
# files than the repository's (or before fingerprints were recorded) is rebuilt as a new version;
# sandboxes running on the old one keep it. A version promoted from a snapshot is left as it is.
server_fingerprint() { # the hash of fingerprintOf in src/templates/python-package.ts: keep the two in step
  (cd "$1" && find . \( -name __pycache__ -o -name '.?*' \) -prune -o -type f -name '*.py' -printf '%P\n' |
    LC_ALL=C sort | xargs -r -d '\n' sha256sum | sha256sum | cut -d' ' -f1)
}
ci_json="$DATA_DIR/templates/code-interpreter-v1/current/template.json"
if [ -f "$ci_json" ]; then
  recorded=$(node -e 'const t = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(t.snapshotId ? "promoted" : (t.fingerprint ?? "none"))' "$ci_json") ||
    die "cannot read $ci_json"
  wanted=$(server_fingerprint "$REPO/src/templates/code-interpreter")
  if [ "$recorded" != promoted ] && [ "$recorded" != "$wanted" ]; then
    if [ "$recorded" = none ]; then
      say "rebuilding template code-interpreter-v1: it records no fingerprint of its code interpreter server, so it may run an older copy than src/templates/code-interpreter (five to fifteen minutes)"
    else
      say "rebuilding template code-interpreter-v1: its code interpreter server (fingerprint ${recorded:0:12}) differs from src/templates/code-interpreter (${wanted:0:12}) (five to fifteen minutes)"
    fi
    node "$CLI" template build code-interpreter-v1 --force --data-dir "$DATA_DIR" || die "rebuilding template code-interpreter-v1 failed"
  fi
fi

# 3b. The qemu guest of the debian template (kernel, initramfs, root image with the host's qemu-ga bundled in),
# which the first qemu sandbox would otherwise build. Silent when it is there already.
node "$CLI" setup --qemu-guest debian --data-dir "$DATA_DIR" || die "building the qemu guest of template debian failed"

# 4. The `sandstorm` command, rewritten only when it differs.
case "$REPO" in *"'"*) die "the repository path must not contain a single quote: $REPO" ;; esac
wrapper="#!/bin/sh
exec node '$REPO/dist/src/cli/bin.cjs' \"\$@\""
if [ "$(cat /usr/local/bin/sandstorm 2>/dev/null || true)" != "$wrapper" ]; then
  say "installing /usr/local/bin/sandstorm"
  printf '%s\n' "$wrapper" >/usr/local/bin/sandstorm.tmp
  chmod 0755 /usr/local/bin/sandstorm.tmp
  mv -f /usr/local/bin/sandstorm.tmp /usr/local/bin/sandstorm
fi
