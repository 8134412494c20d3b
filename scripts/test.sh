#!/usr/bin/env bash
# Runs every check of the project, the same way on a laptop and in CI (.ci/run): sets the
# machine up (scripts/setup.sh), then lint, type-check, `buf lint`, the codegen drift check,
# Python lint and types, the TypeScript tests (vitest, with a real PostgreSQL) and the Python
# tests (pytest). Stops at the first failure, exits non-zero, and prints a summary.
#
#   bash scripts/test.sh                everything, stopping at the first failure
#   bash scripts/test.sh --keep-going   run every check and report all failures at the end
#   bash scripts/test.sh --no-setup     skip scripts/setup.sh (when you know it is done)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KAON_ROOT"

run_setup=1
keep_going=0
for arg in "$@"; do
  case "$arg" in
    --no-setup) run_setup=0 ;;
    --keep-going) keep_going=1 ;;
    -h | --help)
      sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$arg'; usage: scripts/test.sh [--keep-going] [--no-setup]" ;;
  esac
done

# Test output is read in logs, not terminals: no colour codes unless on a TTY.
[[ -t 1 ]] || export NO_COLOR=1 FORCE_COLOR=0

results=()
failed=()
current=""
current_started=0
total_started=$SECONDS

summary() {
  local rc=$?
  if [[ -n "$current" ]]; then
    results+=("FAIL  $(printf '%4ss' $((SECONDS - current_started)))  $current")
  fi
  printf '\n%s==>%s summary (%ss)\n' "$_kaon_bold" "$_kaon_reset" $((SECONDS - total_started))
  local r
  for r in "${results[@]}"; do printf '    %s\n' "$r"; done
  if ((rc == 0)); then
    ok "all checks passed"
  elif ((${#failed[@]} > 0)); then
    fail_line "${#failed[@]} check(s) failed: ${failed[*]}; the output above says why"
  else
    fail_line "'${current:-setup}' failed (exit $rc); the output above says why"
  fi
}
trap summary EXIT

# check NAME COMMAND...: runs one named check; a failure ends the script, or with
# --keep-going is recorded and the next check runs.
check() {
  current=$1
  shift
  current_started=$SECONDS
  printf '\n'
  step "$current"
  if ((keep_going)); then
    local rc=0
    "$@" || rc=$?
    if ((rc != 0)); then
      results+=("FAIL  $(printf '%4ss' $((SECONDS - current_started)))  $current (exit $rc)")
      failed+=("'$current'")
      current=""
      return 0
    fi
  else
    "$@"
  fi
  results+=("ok    $(printf '%4ss' $((SECONDS - current_started)))  $current")
  current=""
}

# skipped NAME WHY: records a check that has nothing to check yet.
skipped() {
  printf '\n'
  step "$1"
  note "skipped: $2"
  results+=("skip     -   $1 ($2)")
}

if ((run_setup)); then
  check "setup (scripts/setup.sh)" env KAON_SETUP_NO_TSC=1 bash scripts/setup.sh
fi
python=$(venv_python)
venv_bin="$KAON_VENV/bin"

check "lint and format: biome check" npx --no-install biome check .
check "type-check: tsc -b" npx --no-install tsc -b
check "type-check: tests (tsconfig.tests.json)" npx --no-install tsc -p tsconfig.tests.json
check "proto lint: buf lint" npx --no-install buf lint
check "generated code is up to date: scripts/gen.sh --check" bash scripts/gen.sh --check

# ---- Python: hand-written code only (the generated kaon/v1 is excluded) -------------------
# Python files under test/ (cross-language tests), outside the SDK's own tree.
mapfile -t root_py < <(find test -name '*.py' -not -path '*/__pycache__/*' -not -path '*/node_modules/*' | LC_ALL=C sort)
mapfile -t root_py_tests < <(printf '%s\n' "${root_py[@]}" | grep -E '(^|/)(test_[^/]*|[^/]*_test)\.py$' || true)
have_sdk=0
[[ -f sdk-python/pyproject.toml ]] && have_sdk=1
mapfile -t sdk_py < <(find sdk-python/src sdk-python/tests -name '*.py' -not -path 'sdk-python/src/kaon/v1/*' 2>/dev/null | LC_ALL=C sort)
py_targets=()
((${#sdk_py[@]} > 0)) && py_targets+=(sdk-python)
((${#root_py[@]} > 0)) && py_targets+=(test)

if ((${#py_targets[@]} == 0)); then
  skipped "python lint: ruff" "no hand-written Python yet"
else
  # Files under sdk-python follow sdk-python/pyproject.toml's [tool.ruff]; the exclude is
  # repeated here so that the generated stubs stay out even without that config.
  ruff_args=(--force-exclude --extend-exclude sdk-python/src/kaon/v1)
  check "python lint: ruff check" "$venv_bin/ruff" check "${ruff_args[@]}" "${py_targets[@]}"
  check "python format: ruff format --check" "$venv_bin/ruff" format --check "${ruff_args[@]}" "${py_targets[@]}"
fi

# These functions run several commands and must fail if any does; they cannot rely on set -e,
# which bash turns off inside a function called as `fn || ...` (as --keep-going does).
py_mypy() {
  local rc=0
  if ((have_sdk && ${#sdk_py[@]} > 0)); then
    # sdk-python/pyproject.toml's [tool.mypy] (strict, src layout, generated code excluded).
    local targets=(src/kaon)
    if compgen -G 'sdk-python/tests/*.py' >/dev/null; then targets+=(tests); fi
    (cd sdk-python && "$venv_bin/mypy" "${targets[@]}") || rc=1
  fi
  if ((${#root_py[@]} > 0)); then
    MYPYPATH=sdk-python/src "$venv_bin/mypy" --strict "${root_py[@]}" || rc=1
  fi
  return "$rc"
}
if ((${#py_targets[@]} == 0)); then
  skipped "python types: mypy" "no hand-written Python yet"
else
  check "python types: mypy --strict" py_mypy
fi

check "typescript tests: vitest (with PostgreSQL)" npx --no-install vitest run

mapfile -t sdk_py_tests < <(printf '%s\n' "${sdk_py[@]}" | grep -E '^sdk-python/tests/(.*/)?(test_[^/]*|[^/]*_test)\.py$' || true)
py_tests() {
  local rc=0
  if ((${#sdk_py_tests[@]} > 0)); then
    # sdk-python/pyproject.toml's [tool.pytest.ini_options] applies (cwd sdk-python).
    (cd sdk-python && KAON_REQUIRE_SERVER=1 "$venv_bin/pytest" -q) || rc=1
  fi
  if ((${#root_py_tests[@]} > 0)); then
    "$venv_bin/pytest" -q "${root_py_tests[@]}" || rc=1
  fi
  return "$rc"
}
# pytest exits 5 when it collects nothing; that is only acceptable when no test file exists,
# so that case is decided here, by looking, and pytest never runs on an empty set.
if ((${#sdk_py_tests[@]} == 0 && ${#root_py_tests[@]} == 0)); then
  skipped "python tests: pytest" "no Python test files yet"
else
  check "python tests: pytest" py_tests
fi

((${#failed[@]} == 0)) || exit 1
