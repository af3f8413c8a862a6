#!/usr/bin/env bash
# Builds PostgreSQL N (13, 17 or 18), with pgvector and pg_cron, into a prefix of its own
# (/opt/doctrove_embed/pgN) from Debian's source packages; 16 comes from a PyPI wheel instead. Debian 12 packages only
# PostgreSQL 15; the other majors come from the source packages of other suites, fetched with a
# private apt configuration so that the system's sources stay bookworm. Where the mirror's
# index names a version its pool no longer serves, the file is fetched from the pool by URL.
# Every file is checked against the sha256 pinned below. Idempotent: each part is skipped when
# its result is already installed. Usage: deps_other_pg.sh N (as root).
set -euo pipefail
shopt -s inherit_errexit
source "$(dirname "$0")/lib.sh"
# Run from `make deps` or `make test`, the environment says this is a sub-make; PostgreSQL's
# build then assumes its generated headers exist and fails in parallel. Build as a top-level make.
unset MAKEFLAGS MFLAGS MAKELEVEL

N="${1:?PostgreSQL major version}"
PREFIX="$(pg_prefix "$N")"
PG_CONFIG="$PREFIX/bin/pg_config"

# Source of each server: "suite package" for `apt-get source`, or "pool path" for a file
# that the mirror's pool serves while its index names a newer one it lacks.
case "$N" in
    13) PG_SOURCE="apt bullseye postgresql-13 postgresql-13_13.16.orig.tar.bz2"
        PG_SHA256=c9cbbb6129f02328204828066bb3785c00a85c8ca8fd329c2a8a53c1f5cd8865 ;;
    17) PG_SOURCE="pool - pool/main/p/postgresql-17/postgresql-17_17.11.orig.tar.bz2"
        PG_SHA256=dd27f2b3c59e73ed14aa3324901242bf69a032a6347805f274e6260322d42979 ;;
    18) PG_SOURCE="apt sid postgresql-18 postgresql-18_18.6.orig.tar.bz2"
        PG_SHA256=555610c24d53e4316da5b7d3fc25c279d96856d5e0e23ee308c328c5fa881d9f ;;
    # Debian serves no PostgreSQL 16 source; PyPI's pgserver wheel holds a relocatable 16.2 build
    # (server, client programs, headers and PGXS; its pgvector 0.6.2 is replaced below).
    16) PG_SOURCE="wheel pgserver==0.1.4"
        PG_SHA256=cb0e711e257dbfa2681d78c0bd789dd81753bc28c207889dcefa8f80706f3fed ;;
    *) echo "PostgreSQL $N: no source of it is served here (13, 15, 16, 17 and 18 are)" >&2; exit 1 ;;
esac
# pgvector 0.8.0 (Debian trixie) predates PostgreSQL 18; 0.8.6 supports 13 to 18, so the
# servers built here all get it. pg_cron 1.6 is the first to support 16 and later.
PGVECTOR_SOURCE="pool - pool/main/p/pgvector/pgvector_0.8.6.orig.tar.gz"
PGVECTOR_SHA256=25c9b78cfdaa43c66788d7490246ac24e4fe1c86f19c4b60c089b723f84a4a0d
PGCRON_SOURCE="pool - pool/main/p/pg-cron/pg-cron_1.6.7.orig.tar.gz"
PGCRON_SHA256=d950bc29155f31017567e23a31d268ff672e98276c0e9d062512fb7870351f03

mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
work="$(mktemp -d)"
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

# fetch "apt SUITE PACKAGE FILE" | "pool - PATH", SHA256: leaves the verified file in $work
# and prints its path.
fetch() {
    local kind suite what file sha="$2"
    read -r kind suite what file <<<"$1"
    if [[ "$kind" == apt ]]; then
        local lists="$work/apt-$suite"
        mkdir -p "$lists/lists/partial" "$lists/archives/partial"
        echo "deb-src $mirror $suite main" >"$lists/sources.list"
        local aptopts=(-o "Dir::Etc::sourcelist=$lists/sources.list" -o "Dir::Etc::sourceparts=-"
                       -o "Dir::State::Lists=$lists/lists" -o "Dir::Cache::archives=$lists/archives"
                       -o "APT::Get::List-Cleanup=0")
        apt-get "${aptopts[@]}" update -qq >&2
        (cd "$work" && apt-get "${aptopts[@]}" source -qq --download-only "$what" >&2)
    else
        file="$(basename "$what")"
        curl -sSf -o "$work/$file" "$mirror/$what"
    fi
    [[ -f "$work/$file" ]] || { echo "Debian's source of $1 did not bring $file" >&2; return 1; }
    echo "$sha  $work/$file" | sha256sum --check --quiet >&2 \
        || { echo "$file does not match its pinned sha256" >&2; return 1; }
    echo "$work/$file"
}

# source_tree SOURCE SHA256: fetches, verifies and unpacks SOURCE into a folder of its own and
# sets $src to the source tree (fails, and stops the script, on any error).
source_tree() {
    local archive dir
    archive="$(fetch "$1" "$2")"
    dir="$work/src-$(basename "$archive")"
    mkdir -p "$dir"
    tar -xf "$archive" -C "$dir"
    src="$(find "$dir" -mindepth 1 -maxdepth 1 -type d | head -1)"
    [[ -d "$src" ]] || { echo "$archive holds no source folder" >&2; return 1; }
}

# unpack_wheel SPEC SHA256: PostgreSQL from a PyPI wheel. Its programs find their libpq through
# the RPATH $ORIGIN/../../../pgserver.libs, so the wheel stays unpacked as it is, beside the
# prefix, and the prefix is a link to its pgserver/pginstall.
unpack_wheel() {
    local wheel unpacked="$PREFIX.wheel"
    echo "$1 --hash=sha256:$2" >"$work/requirements.txt"
    python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
        --python-version 3.10 --require-hashes -r "$work/requirements.txt" --dest "$work"
    wheel="$(find "$work" -maxdepth 1 -name '*.whl' | head -1)"
    rm -rf "$unpacked"
    unzip -q "$wheel" -d "$unpacked"
    chmod -R a+rX "$unpacked"
    ln -sfn "$unpacked/pgserver/pginstall" "$PREFIX"
    # Its own pgvector is 0.6.2, older than the 0.8 the extension needs; 0.8.6 is built below.
    rm -f "$PREFIX"/lib/postgresql/vector.so "$PREFIX"/share/postgresql/extension/vector[.-]*
    rm -rf "$PREFIX"/include/postgresql/server/extension/vector
}

# Written last, so that an interrupted build is done again.
BUILT="$PREFIX/.built-from-debian-source"
[[ "$PG_SOURCE" == wheel* ]] && BUILT="$PREFIX/.unpacked-from-wheel"
if [[ -f "$BUILT" ]]; then
    log "PostgreSQL $N already in $PREFIX"
elif [[ "$PG_SOURCE" == wheel* ]]; then
    log "unpacking PostgreSQL $N from PyPI's ${PG_SOURCE#wheel } into $PREFIX.wheel"
    rm -rf "$PREFIX"
    unpack_wheel "${PG_SOURCE#wheel }" "$PG_SHA256"
    chmod -R a+rX "$PREFIX/"
    echo "$PG_SOURCE $PG_SHA256" >"$BUILT"
else
    log "building PostgreSQL $N from Debian's source package into $PREFIX (a few minutes)"
    rm -rf "$PREFIX"
    source_tree "$PG_SOURCE" "$PG_SHA256"
    # Without ICU and readline: the test clusters use the C.UTF-8 locale and no interactive psql.
    (cd "$src" && ./configure -q --prefix="$PREFIX" --without-icu --without-readline >"$work/configure.log" 2>&1) \
        || { tail -30 "$work/configure.log"; exit 1; }
    make -C "$src" -s -j"$(nproc)" >/dev/null
    make -C "$src" -s install >/dev/null
    chmod -R a+rX "$PREFIX/"
    echo "$PG_SOURCE $PG_SHA256" >"$BUILT"
fi

# pgxs_extension NAME SOURCE SHA256: builds and installs the PGXS extension NAME (its control
# file) for this server, unless it is there.
pgxs_extension() {
    if [[ -f "$("$PG_CONFIG" --sharedir)/extension/$1.control" ]]; then
        log "$1 already installed for PostgreSQL $N"
        return
    fi
    log "building $1 for PostgreSQL $N"
    source_tree "$2" "$3"
    make -C "$src" PG_CONFIG="$PG_CONFIG" -s -j"$(nproc)" >/dev/null
    make -C "$src" PG_CONFIG="$PG_CONFIG" -s install >/dev/null
}
pgxs_extension vector "$PGVECTOR_SOURCE" "$PGVECTOR_SHA256"
pgxs_extension pg_cron "$PGCRON_SOURCE" "$PGCRON_SHA256"
chmod -R a+rX "$PREFIX/"
