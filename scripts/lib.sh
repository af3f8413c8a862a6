# Shared helpers for the scripts that start a throwaway PostgreSQL cluster and the mock.
# Source it; it defines functions only.

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

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

# mock_start PORT LOGFILE [more doctrove-mock arguments]: the release build of the mock.
mock_start() {
    local port="$1" logfile="$2"; shift 2
    "$ROOT/target/release/doctrove-mock" --listen "127.0.0.1:$port" "$@" >"$logfile" 2>&1 &
    MOCK_PID=$!
    for _ in $(seq 1 100); do
        grep -q "listening" "$logfile" 2>/dev/null && return 0
        kill -0 "$MOCK_PID" 2>/dev/null || { cat "$logfile"; return 1; }
        sleep 0.05
    done
    echo "the mock did not start" >&2
    return 1
}

mock_stop() {
    [[ -n "${MOCK_PID:-}" ]] && kill "$MOCK_PID" 2>/dev/null
    MOCK_PID=
    return 0
}
