#!/usr/bin/env bash
# Builds the local agent (core/agent, Go, standard library only) to core/dist/bin/kaon-agent.
# A fast no-op when the binary is newer than every source file, so tests and `kaon server`
# set-up can call it unconditionally.
set -euo pipefail

core="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$core/agent"
out="$core/dist/bin/kaon-agent"

if [[ -x "$out" ]] &&
  [[ -z "$(find "$src" \( -name '*.go' ! -name '*_test.go' -o -name go.mod \) -newer "$out" -print -quit)" ]]; then
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build-agent.sh: the Go toolchain (go >= 1.19) is needed to build the local agent;" \
    "install it (Debian: apt-get install golang-go) and run core/scripts/build-agent.sh again" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
cd "$src"
# GOTOOLCHAIN=local: never download a toolchain; -buildvcs=false: no git stamping (the tree
# may be dirty or owned by another user).
GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$out.tmp.$$" .
mv -f "$out.tmp.$$" "$out"
