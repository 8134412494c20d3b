# Shared helpers for the scripts in this folder: where the repo is, how to print progress,
# and a PATH that finds the toolchains Debian and the Go tarball install outside the default
# PATH. Sourced, never run.

KAON_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KAON_ROOT
KAON_VENV="$KAON_ROOT/.venv"

# Go from the official tarball lives in /usr/local/go/bin; the PostgreSQL server binaries
# (initdb, postgres) live in /usr/lib/postgresql/<major>/bin and are not on PATH on Debian.
for dir in /usr/local/go/bin /usr/lib/postgresql/*/bin; do
  if [[ -d "$dir" && ":$PATH:" != *":$dir:"* ]]; then PATH="$PATH:$dir"; fi
done
export PATH

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
  _kaon_bold=$'\e[1m' _kaon_red=$'\e[31m' _kaon_green=$'\e[32m' _kaon_dim=$'\e[2m' _kaon_reset=$'\e[0m'
else
  _kaon_bold='' _kaon_red='' _kaon_green='' _kaon_dim='' _kaon_reset=''
fi

# step "message": a top-level progress line.
step() { printf '%s==>%s %s\n' "$_kaon_bold" "$_kaon_reset" "$*"; }
# note "message": a detail line under the current step.
note() { printf '    %s%s%s\n' "$_kaon_dim" "$*" "$_kaon_reset"; }
ok() { printf '%sok%s  %s\n' "$_kaon_green" "$_kaon_reset" "$*"; }
fail_line() { printf '%sFAIL%s %s\n' "$_kaon_red" "$_kaon_reset" "$*" >&2; }
die() {
  printf '%serror:%s %s\n' "$_kaon_red" "$_kaon_reset" "$*" >&2
  exit 1
}

# hash_files FILE...: one sha256 over the names and contents of the files that exist.
hash_files() {
  local f
  for f in "$@"; do
    if [[ -f "$f" ]]; then
      printf '%s\n' "$f"
      cat "$f"
    fi
  done | sha256sum | cut -d' ' -f1
}

# The Python interpreter of the project's virtual environment; fails with the fix if absent.
venv_python() {
  if [[ ! -x "$KAON_VENV/bin/python" ]]; then
    die "no Python virtual environment at $KAON_VENV; run: bash scripts/setup.sh"
  fi
  printf '%s\n' "$KAON_VENV/bin/python"
}
