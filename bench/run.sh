#!/usr/bin/env bash
# `make bench`: builds and installs the extension and the mock, sets up the baseline's Python
# environment, and runs bench.py (extra arguments go to it: --papers, --seconds, --latency-ms);
# then the backfill on a table shaped like the production one (seed_shape.py), then the local
# model server (model_bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s install
cargo build -q --release -p doctrove_mock -p doctrove_model -p doctrove_import
if [[ ! -x bench/.venv/bin/python ]]; then
    python3 -m venv bench/.venv
fi
bench/.venv/bin/pip install -q psycopg2-binary
bench/.venv/bin/python bench/bench.py "$@"
bench/.venv/bin/python bench/seed_shape.py
bench/.venv/bin/python bench/model_bench.py
