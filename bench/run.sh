#!/usr/bin/env bash
# `make bench`: builds and installs the extension and the mock, sets up the baseline's Python
# environment, and runs bench.py (extra arguments go to it: --papers, --seconds, --latency-ms);
# then the backfill on a table shaped like the production one (seed_shape.py), then the local
# model server (model_bench.py), the local models side by side with ONNX Runtime and
# sentence-transformers with fractions of the cores' peak (runtime_bench.py), then search at
# 1,000,000 papers and search quality on the local model (search_bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s install
cargo build -q --release -p doctrove_mock -p doctrove_model -p doctrove_import
if [[ ! -x bench/.venv/bin/python ]]; then
    python3 -m venv bench/.venv
fi
bench/.venv/bin/pip install -q psycopg2-binary numpy
bench/.venv/bin/python bench/bench.py "$@"
bench/.venv/bin/python bench/seed_shape.py
bench/.venv/bin/python bench/model_bench.py
bench/.venv/bin/python bench/runtime_bench.py
bench/.venv/bin/python bench/search_bench.py
