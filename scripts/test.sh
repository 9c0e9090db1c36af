#!/usr/bin/env bash
# Switchboard's test command: everything CI runs, in order, on real backends.
#
#   scripts/test.sh
#
# 1. test-env     start Redis, PostgreSQL, tansu (Kafka protocol), dovecot (IMAP)
#                 and aiosmtpd (SMTP) on free loopback ports (scripts/test-env.sh;
#                 installs what is missing, Chromium too)
# 2. fmt          cargo fmt --all -- --check
# 3. clippy       cargo clippy --workspace --all-targets --all-features -- -D warnings
# 4. nextest      cargo nextest run --workspace --all-features --no-fail-fast
# 5. integrator   Python grpcio against `switchboard dev` (tests/python)
# 6. charts       Helm chart, deploy/k8s and docker-compose checks
#
# Every step runs even when an earlier one fails; the script exits 1 if any
# failed and ends with the line "N passed, M failed" (steps, not tests).
# With CI=true the Rust tests fail instead of skipping when a backend is
# missing. The backends are stopped on exit unless they were already running.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT="$PWD"
if [[ -d "$HOME/.cargo/bin" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
STATE_DIR="${SWITCHBOARD_TEST_ENV_DIR:-$ROOT/.test-env}"
PYTHON="$STATE_DIR/venv/bin/python"
export SWITCHBOARD_BIN="${SWITCHBOARD_BIN:-target/debug/switchboard}"

declare -a SUMMARY=()
PASSED=0
FAILED=0

step() {
    local name="$1"
    shift
    local started=$SECONDS rc
    printf '\n==> [%s] %s\n' "$name" "$*"
    "$@"
    rc=$?
    local took=$((SECONDS - started))
    if ((rc == 0)); then
        PASSED=$((PASSED + 1))
        SUMMARY+=("$(printf 'PASS  %-11s %5ss' "$name" "$took")")
    else
        FAILED=$((FAILED + 1))
        SUMMARY+=("$(printf 'FAIL  %-11s %5ss  (exit %s)' "$name" "$took" "$rc")")
    fi
    printf '<== [%s] %s in %ss\n' "$name" "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)")" "$took"
    return 0
}

# ---------------------------------------------------------------- backends ---

STARTED_ENV=0
stop_env() {
    if ((STARTED_ENV == 1)); then
        bash scripts/test-env.sh stop || true
    fi
}
trap stop_env EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_env() {
    if bash scripts/test-env.sh status >/dev/null 2>&1; then
        echo "reusing the running test environment (it stays up afterwards)"
    else
        STARTED_ENV=1
        bash scripts/test-env.sh start || return 1
    fi
    # shellcheck source=/dev/null
    . "$STATE_DIR/env.sh" || return 1
    env | grep '^SWITCHBOARD_TEST_' | sort
}

# ------------------------------------------------------------------- steps ---

nextest() {
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "cargo-nextest is missing: installing it"
        cargo install cargo-nextest --locked || return 1
    fi
    cargo nextest run --workspace --all-features --no-fail-fast
}

integrator() {
    # nextest has normally built the binary already; this makes sure.
    cargo build --bin switchboard || return 1
    [[ -x "$PYTHON" ]] || {
        echo "missing $PYTHON (scripts/test-env.sh install creates it)" >&2
        return 1
    }
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/python --ignore=tests/python/test_charts.py
}

charts() {
    bash scripts/check-charts.sh
}

step test-env start_env
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets --all-features -- -D warnings
step nextest nextest
step integrator integrator
step charts charts

# Stop the backends now, so nothing prints after the closing line.
stop_env
STARTED_ENV=0

printf '\n==> summary\n'
printf '  %s\n' "${SUMMARY[@]}"
printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
