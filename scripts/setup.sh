#!/usr/bin/env bash
# Prepares this machine to build, run and test kaon: Debian packages (PostgreSQL for the
# storage tests, Go for the local agent, a compiler for native npm modules), npm packages, the
# Python virtual environment (.venv) with the SDK and the dev tools, the TypeScript build and
# the local agent. Safe to run again and again: every stage checks first and skips when there
# is nothing to do, so a re-run takes a few seconds. Called by scripts/test.sh and
# scripts/demo.sh; works as root on a fresh Debian 12 (CI) and as a normal user on a machine
# that already has the packages.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KAON_ROOT"

started=$SECONDS

# ---- Debian packages -------------------------------------------------------------------
# Only what is missing is installed, and apt is not touched at all when nothing is.
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
have psql || missing+=(postgresql-client)
have go || missing+=(golang-go)
have python3 || missing+=(python3)
if have python3 && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
# better-sqlite3 builds from source when no prebuilt binary can be fetched.
{ have make && have g++; } || missing+=(build-essential)
have git || missing+=(git)
have runuser || missing+=(util-linux)
# Java runs Spark (spark steps, the example's global model).
have java || missing+=(openjdk-17-jre-headless)

step "system packages"
if ((${#missing[@]} == 0)); then
  note "all present"
else
  note "missing: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    die "install these Debian packages first (as root): apt-get install -y ${missing[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package index only when there is none from the last day (a fresh image has
  # none); if an install still fails on a stale index, refresh once and retry.
  if [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]]; then
    note "apt-get update"
    apt-get update -qq
  fi
  note "apt-get install ${missing[*]}"
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    note "retrying after apt-get update"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Re-read PATH additions (postgres bin dir, Go) now that they exist.
  source "$KAON_ROOT/scripts/lib.sh"
fi

if ! have node; then
  die "Node.js >= 20.19 is required (Debian 12's nodejs is too old): install it from nodejs.org or NodeSource"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= 20)) || die "Node.js >= 20.19 is required, found $(node --version)"

# ---- npm packages ----------------------------------------------------------------------
# A stamp in node_modules records the hash of the lockfile and manifests it was installed
# from; npm runs only when they change.
step "npm packages"
npm_inputs=(package.json package-lock.json proto/package.json core/package.json sdk-ts/package.json)
npm_hash=$(hash_files "${npm_inputs[@]}")
npm_stamp=node_modules/.kaon-setup-stamp
if [[ -f "$npm_stamp" && "$(cat "$npm_stamp")" == "$npm_hash" ]]; then
  note "up to date"
else
  npm_flags=(--no-audit --no-fund --loglevel=error)
  if [[ ! -d node_modules && -f package-lock.json ]]; then
    note "npm ci"
    npm_log=$(mktemp)
    if ! npm ci "${npm_flags[@]}" >"$npm_log" 2>&1; then
      # Some npm versions reject a lockfile that lacks other platforms' optional packages
      # (biome's and buf's per-OS binaries) even when npm itself wrote it.
      note "npm ci failed: $(grep -m1 -E 'npm error [^c ]|Missing:' "$npm_log" || tail -n1 "$npm_log")"
      note "falling back to npm install"
      npm install "${npm_flags[@]}"
    fi
    rm -f "$npm_log"
  else
    # An existing node_modules is updated in place rather than wiped, so a re-run never pulls
    # the floor from under a test that is running in the same tree.
    note "npm install"
    npm install "${npm_flags[@]}"
  fi
  # npm >= 11.19 skips dependency install scripts unless package.json's allowScripts lists
  # them; better-sqlite3 needs its script to build the native binding.
  if ! (cd core && node -e 'new (require("better-sqlite3"))(":memory:").close()') 2>/dev/null; then
    die "better-sqlite3's native binding did not build; make sure package.json has \"allowScripts\": {\"better-sqlite3\": true}, then run: rm -rf node_modules && bash scripts/setup.sh"
  fi
  printf '%s\n' "$npm_hash" >"$npm_stamp"
fi

# ---- Python virtual environment ------------------------------------------------------
step "python environment (.venv)"
python_bin=${KAON_PYTHON:-python3}
if [[ ! -x "$KAON_VENV/bin/python" ]] || ! "$KAON_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  note "creating $KAON_VENV with $($python_bin --version 2>&1)"
  rm -rf "$KAON_VENV"
  "$python_bin" -m venv "$KAON_VENV"
fi
py_inputs=(scripts/python-tools.txt scripts/python-runtime.txt examples/recommendations/requirements.txt sdk-python/pyproject.toml)
py_hash="$(hash_files "${py_inputs[@]}")-$("$KAON_VENV/bin/python" -c 'import sys; print(sys.version)' | tr -d ' \n')"
py_stamp="$KAON_VENV/.kaon-setup-stamp"
if [[ -f "$py_stamp" && "$(cat "$py_stamp")" == "$py_hash" ]]; then
  note "up to date"
else
  pip_args=(-r scripts/python-tools.txt -r scripts/python-runtime.txt)
  if [[ -f sdk-python/pyproject.toml ]]; then
    pip_args+=(-e "sdk-python[dev]")
    note "pip install the SDK (editable, with [dev]) and the dev tools"
  else
    note "pip install the dev tools (no sdk-python/pyproject.toml yet)"
  fi
  "$KAON_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${pip_args[@]}"
  printf '%s\n' "$py_hash" >"$py_stamp"
fi

# ---- TypeScript build ------------------------------------------------------------------
# scripts/test.sh sets KAON_SETUP_NO_TSC=1 and runs `tsc -b` as its own, named check.
if [[ "${KAON_SETUP_NO_TSC:-}" != 1 ]]; then
  step "typescript build (tsc -b)"
  npx --no-install tsc -b
fi

# ---- local agent (Go) ------------------------------------------------------------------
if [[ -f core/scripts/build-agent.sh ]]; then
  step "local agent (core/scripts/build-agent.sh)"
  bash core/scripts/build-agent.sh
fi

# ---- podman (container steps) --------------------------------------------------------------
# Installed and configured where we are root (CI, a fresh machine); elsewhere the container
# tests skip with the reason printed, and the script says what to run.
if [[ $(id -u) -eq 0 || -x "$(command -v podman 2>/dev/null)" ]]; then
  bash scripts/setup-podman.sh
fi

ok "setup done in $((SECONDS - started))s"
