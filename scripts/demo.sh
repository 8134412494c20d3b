#!/usr/bin/env bash
# The README's main command: sets the machine up (scripts/setup.sh, fast when already done)
# and runs `kaon demo`, which starts a server with a temporary data directory, deploys the
# example pipeline and runs it. Arguments are passed on to `kaon demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KAON_ROOT"

bash scripts/setup.sh
cli=core/dist/cli/main.js
[[ -f "$cli" ]] || die "$cli is missing after the build; the kaon CLI is not built yet (see core/src/cli/)"
printf '\n'
step "kaon demo $*"
exec node "$cli" demo "$@"
