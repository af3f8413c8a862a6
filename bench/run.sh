#!/usr/bin/env bash
# `make bench`: builds and installs the extension and the mock, sets up the baseline's Python
# environment, and runs bench.py. Extra arguments go to bench.py (--papers, --seconds,
# --latency-ms).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s install
cargo build -q --release -p doctrove_mock
if [[ ! -x bench/.venv/bin/python ]]; then
    python3 -m venv bench/.venv
fi
bench/.venv/bin/pip install -q psycopg2-binary
exec bench/.venv/bin/python bench/bench.py "$@"
