#!/usr/bin/env bash
# Checks the deployment artefacts (tests/python/test_charts.py):
#   - charts/switchboard: helm lint through helm-sdkpy (severity 3 fails) for
#     several value sets, plus a real render (helm-sdkpy install against an
#     in-process fake API server on 127.0.0.1) validated with
#     kubernetes-validate --strict and checked for probes, security, config;
#   - deploy/k8s/*.yaml: kubernetes-validate --strict and the same checks;
#   - docker-compose.yml: `docker-compose config -q` and its wiring;
#   - every shipped or rendered switchboard.toml: accepted by
#     `switchboard routing --print-config` (SWITCHBOARD_BIN, default
#     target/debug/switchboard; skipped when absent unless CI=true or
#     SWITCHBOARD_BIN is set).
# Exits non-zero when any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

state_dir="${SWITCHBOARD_TEST_ENV_DIR:-$PWD/.test-env}"
python="$state_dir/venv/bin/python"
if [[ "${SWITCHBOARD_TEST_ENV_NO_INSTALL:-0}" != "1" ]]; then
    # Only the venv and docker-compose: no backends are needed here.
    SWITCHBOARD_TEST_ENV_BACKENDS="" bash scripts/test-env.sh install
fi
if [[ ! -x "$python" ]]; then
    echo "check-charts: $python is missing (run scripts/test-env.sh install)" >&2
    exit 1
fi
exec "$python" -m pytest -q -p no:cacheprovider tests/python/test_charts.py "$@"
