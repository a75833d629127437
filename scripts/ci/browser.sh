#!/usr/bin/env bash
# The dashboard in real headless Chromium (Debian's chromium, installed
# here) and /metrics through prometheus_client's parser (from PyPI, in a
# virtualenv this script makes), against real processes while a graph
# runs (scripts/ci/dashboard_check.py has the checks). The screenshot is
# left in target/ci-artifacts/dashboard.png.
#
#   DASK_BROWSER_VENV=DIR scripts/ci/browser.sh   # reuse a virtualenv
set -euo pipefail
cd "$(dirname "$0")/../.."
target_dir=${CARGO_TARGET_DIR:-target}
if ! command -v chromium > /dev/null; then
  echo "-- browser: apt-get install chromium"
  apt-get update -qq > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
fi
venv=${DASK_BROWSER_VENV:-$target_dir/browser-venv}
. scripts/venv.sh
ensure_venv "$venv" "import prometheus_client" prometheus_client
cargo build --locked -q -p dask-scheduler -p dask-worker -p dask-cluster --bins
bin=$(cd "$target_dir/debug" && pwd)
artifacts="$target_dir/ci-artifacts"
mkdir -p "$artifacts"
"$venv/bin/python" scripts/ci/dashboard_check.py "$bin" "$artifacts"
