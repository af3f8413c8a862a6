# Shared helpers for the scripts that start a throwaway PostgreSQL cluster and the mock.
# Source it; it defines functions and the paths the scripts share.

# PG: the PostgreSQL major version to build for and test on (15, Debian's own, by default).
# 15 is Debian 12's package; the others are built by deps_other_pg.sh into a prefix of their own.
PG="${PG:-15}"
pg_prefix() {
    if [[ "$1" == 15 ]]; then echo /usr/lib/postgresql/15; else echo "/opt/doctrove_embed/pg$1"; fi
}
# use_pg N: makes N the version the functions below (and the children of this shell) use.
use_pg() {
    export PG="$1"
    PG_BIN="$(pg_prefix "$PG")/bin"
    PG_CONFIG="$PG_BIN/pg_config"
}
use_pg "$PG"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The local model's folder (unpacked by deps.sh) and the Python with numpy for its reference check.
MODEL_DIR="${DOCTROVE_MODEL_DIR:-/opt/doctrove_embed/all-MiniLM-L6-v2}"
MPNET_DIR="${DOCTROVE_MPNET_DIR:-/opt/doctrove_embed/all-mpnet-base-v2}"
REFERENCE_VENV=/opt/doctrove_embed/venv
# Debian packages built for this machine's set-up (the pgvector backport).
DEB_DIR=/opt/doctrove_embed/debs
# The pgvector backport (pgvector_backport.sh): Debian trixie's upstream version and revision,
# with Debian's backport suffix and this project's.
PGVECTOR_UPSTREAM=0.8.0
PGVECTOR_DEBIAN_REVISION=1
PGVECTOR_BACKPORT="$PGVECTOR_UPSTREAM-$PGVECTOR_DEBIAN_REVISION~bpo12+1doctrove1"
# The extension's version (Cargo.toml), and that of its Debian packages.
EXTENSION_VERSION="$(sed -n 's/^version *= *"\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1)"
DEB_VERSION="$EXTENSION_VERSION-1"

log() { printf '==> %s\n' "$*"; }

# cluster_start DIR PORT [postgresql.conf line ...]
# A new cluster in DIR (owned by postgres), listening on 127.0.0.1:PORT and a socket in DIR.
cluster_start() {
    local dir="$1" port="$2"; shift 2
    cluster_stop "$dir" 2>/dev/null || true
    rm -rf "$dir"
    mkdir -p "$dir"
    chown postgres "$dir"
    sudo -u postgres "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log"; return 1; }
    {
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        echo "fsync = off"
        echo "max_connections = 50"
        printf '%s\n' "$@"
    } >>"$dir/data/postgresql.conf"
    sudo -u postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { tail -30 "$dir/server.log"; return 1; }
}

# cluster_restart DIR: restart (to apply settings that need it), keeping the data.
cluster_restart() {
    local dir="$1"
    sudo -u postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 restart >/dev/null
}

cluster_stop() {
    local dir="$1"
    [[ -f "$dir/data/postmaster.pid" ]] && sudo -u postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    return 0
}

# wait_started PID LOGFILE PATTERN WHAT: waits (up to 60 s) for a server started in the
# background to print PATTERN; shows its log and fails if it exits first.
wait_started() {
    local pid="$1" logfile="$2" pattern="$3" what="$4"
    for _ in $(seq 1 1200); do
        grep -q "$pattern" "$logfile" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$logfile"; echo "$what exited" >&2; return 1; }
        sleep 0.05
    done
    echo "$what did not start" >&2
    return 1
}

# free_port START: the first TCP port from START on that nothing on 127.0.0.1 listens on, so
# a second run on the same machine (or a cluster someone left running) does not collide.
free_port() {
    local port="$1"
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((port + 1))
    done
    echo "$port"
}

# mock_start LOGFILE [more doctrove-mock arguments]: the release build of the mock, listening
# on a port the system picks (127.0.0.1:0), so it collides with nothing. Sets MOCK_PID, and
# MOCK_URL (http://127.0.0.1:PORT) from the address the mock prints on its "listening on" line.
mock_start() {
    local logfile="$1"; shift
    "$ROOT/target/release/doctrove-mock" --listen 127.0.0.1:0 "$@" >"$logfile" 2>&1 &
    MOCK_PID=$!
    wait_started "$MOCK_PID" "$logfile" "^doctrove-mock listening on " "the mock" || return 1
    MOCK_URL=$(sed -n 's/^doctrove-mock listening on //p' "$logfile")
    [[ "$MOCK_URL" =~ ^http://127\.0\.0\.1:[0-9]+$ ]] \
        || { echo "the mock's listening line names no address: '$MOCK_URL'" >&2; return 1; }
}

# mock_stop: SIGTERM, then wait until the mock has exited (it lets requests under way finish for
# up to 10 s, holding its port meanwhile), so no mock outlives the script that started it.
mock_stop() {
    local pid="${MOCK_PID:-}"
    MOCK_PID=
    [[ -n "$pid" ]] || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}
