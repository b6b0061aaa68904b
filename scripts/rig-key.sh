#!/usr/bin/env bash
# Prints the path of the rig's SSH private key (its .pub is baked into the
# images `make image`, `make e2e` and `make demo` build), creating it once.
# Same path as tests/e2e/src/image.rs: <image cache>/ssh/id_ed25519.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${HORCRUX_IMAGE_CACHE:-$repo/target/image-cache}
key=$cache/ssh/id_ed25519
if [[ ! -f $key ]]; then
    mkdir -p "${key%/*}"
    ssh-keygen -q -t ed25519 -N '' -C horcrux-e2e -f "$key"
fi
echo "$key"
