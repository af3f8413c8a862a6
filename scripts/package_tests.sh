# The Debian packages' part of `make test` (sourced by test.sh, after lib.sh): their file lists,
# installing the extension from its package, and the model server's package from installation
# to purge.

DEB_VERSION="$(sed -n 's/^version *= *"\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1)-1"
extension_deb() { echo "$ROOT/dist/postgresql-$1-doctrove-embed_${DEB_VERSION}_amd64.deb"; }
MODEL_DEB="$ROOT/dist/doctrove-model_${DEB_VERSION}_amd64.deb"

# check_file_list DEB PREFIX...: every path DEB installs lies under one of PREFIXes (or is one of
# their parents), is owned by root, is writable by nobody else, and names no build folder.
check_file_list() {
    local deb="$1"; shift
    dpkg-deb -c "$deb" | awk '{print $1, $2, substr($0, index($0, "./") + 1)}' | {
        local bad=0 mode owner path prefix ok
        while read -r mode owner path; do
            path="${path%/}"
            ok=0
            for prefix in "$@"; do
                [[ "$path" == "$prefix" || "$path" == "$prefix"/* || "$prefix" == "$path"/* || -z "$path" ]] && ok=1
            done
            ((ok)) || { echo "$deb: $path lies outside ${*}" >&2; bad=1; }
            [[ "$owner" == root/root ]] || { echo "$deb: $path is owned by $owner" >&2; bad=1; }
            [[ "${mode:8:1}" != w && "${mode:5:1}" != w ]] || { echo "$deb: $path is writable by others ($mode)" >&2; bad=1; }
            [[ ! "$path" =~ (target/|/root|/tmp/|/opt/|/work/|/home/) ]] || { echo "$deb: $path is a build path" >&2; bad=1; }
        done
        return "$bad"
    }
}

# install_extension_package N: builds postgresql-N-doctrove-embed and puts its files in place of
# `make install`'s. On 15 (Debian's own server) apt installs it with the pgvector backport, after
# every doctrove_embed file already there is removed; on the servers built here its files are
# copied to the paths the server's pg_config names.
install_extension_package() {
    local v="$1" deb unpacked
    deb="$(extension_deb "$v")"
    if [[ "$v" == 15 ]]; then PG=15 bash scripts/package.sh; else PG="$v" bash scripts/package.sh --extension-only; fi
    check_file_list "$deb" "/usr/lib/postgresql/$v/lib" "/usr/share/postgresql/$v/extension" \
        "/usr/share/doc/postgresql-$v-doctrove-embed"
    if [[ "$v" == 15 ]]; then
        rm -f /usr/lib/postgresql/15/lib/doctrove_embed.so /usr/share/postgresql/15/extension/doctrove_embed[.-]*
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "$deb" \
            "$ROOT"/dist/postgresql-15-pgvector_*_amd64.deb >/dev/null
        dpkg -S /usr/lib/postgresql/15/lib/doctrove_embed.so | grep -q "^postgresql-15-doctrove-embed:" \
            || { echo "doctrove_embed.so is not the package's" >&2; return 1; }
    else
        unpacked="$(mktemp -d)"
        dpkg-deb -x "$deb" "$unpacked"
        install -m 644 "$unpacked/usr/lib/postgresql/$v/lib/"* "$("$PG_CONFIG" --pkglibdir)/"
        install -m 644 "$unpacked/usr/share/postgresql/$v/extension/"* "$("$PG_CONFIG" --sharedir)/extension/"
        rm -rf "$unpacked"
        # Without that PostgreSQL major installed from packages, apt refuses the package.
        if apt-get install -s "$deb" >"$TEST_DIR.apt.log" 2>&1; then
            echo "apt would install $deb without postgresql-$v" >&2; return 1
        fi
        grep -q "Depends: postgresql-$v but it is not installable" "$TEST_DIR.apt.log" \
            || { cat "$TEST_DIR.apt.log"; echo "apt did not name the missing postgresql-$v" >&2; return 1; }
    fi
    log "PostgreSQL $v: installed from $(basename "$deb")"
}

# check_foreign_major_refused CLUSTER_DIR PORT OTHER: LOADing the library of PostgreSQL OTHER's
# package into this server ends in an error, and the server goes on: PostgreSQL's own version
# check ("incompatible library ... version mismatch") when the library finds every symbol it
# needs, the dynamic loader's "undefined symbol" when it needs one of a newer server (guc_malloc
# of 16 and later, in 15).
check_foreign_major_refused() {
    local dir="$1" port="$2" other="$3" unpacked out
    unpacked="$(mktemp -d)"
    chmod 755 "$unpacked"
    dpkg-deb -x "$(extension_deb "$other")" "$unpacked"
    out="$("$PG_BIN/psql" -h "$dir" -p "$port" -U postgres -XAtq -d postgres \
        -c "LOAD '$unpacked/usr/lib/postgresql/$other/lib/doctrove_embed.so'" 2>&1 || true)"
    rm -rf "$unpacked"
    echo "LOAD of PostgreSQL $other's library: $out"
    [[ "$out" == ERROR:*"incompatible library"*"version mismatch"* || "$out" == ERROR:*"undefined symbol"* ]] || return 1
    [[ "$("$PG_BIN/psql" -h "$dir" -p "$port" -U postgres -XAtq -d postgres -c "SELECT 1")" == 1 ]]
}

# check_extension_package_removal: `apt-get remove` leaves no doctrove_embed file in PostgreSQL 15.
check_extension_package_removal() {
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq postgresql-15-doctrove-embed >/dev/null
    local left
    left="$(find /usr/lib/postgresql/15 /usr/share/postgresql/15 /usr/share/doc/postgresql-15-doctrove-embed \
        -name '*doctrove*' 2>/dev/null || true)"
    [[ -z "$left" ]] || { echo "apt-get remove left: $left" >&2; return 1; }
    echo "apt-get remove postgresql-15-doctrove-embed: no doctrove_embed file left"
}

# model_package_test REFERENCE_JSON: installs doctrove-model, checks its unit with systemd-analyze,
# runs the unit's ExecStart as written (as the unit's user, with its EnvironmentFile) and compares
# the vectors it serves with sentence-transformers', then removes and purges the package.
model_package_test() {
    local reference="$1" unit=/lib/systemd/system/doctrove-model.service exec_start port pid files
    [[ ! -e /etc/default/doctrove-model ]] || DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq doctrove-model >/dev/null
    check_file_list "$MODEL_DEB" /usr/bin/doctrove-model /usr/share/doctrove-model /usr/share/doc/doctrove-model \
        /usr/share/man/man1/doctrove-model.1.gz \
        /lib/systemd/system/doctrove-model.service /etc/default/doctrove-model
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$MODEL_DEB" >/dev/null
    systemd-analyze verify "$unit"
    [[ "$(getent passwd doctrove-model | cut -d: -f3,7)" =~ ^[0-9]{1,3}:/usr/sbin/nologin$ ]] \
        || { echo "doctrove-model is not a system user without a login: $(getent passwd doctrove-model)" >&2; return 1; }
    dpkg-query --control-show doctrove-model prerm | grep -q "deb-systemd-invoke stop 'doctrove-model.service'" \
        || { echo "removing doctrove-model would not stop its service" >&2; return 1; }

    # The unit's ExecStart, with the variables of its EnvironmentFile (the port moved to a free one).
    exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
    port="$(free_port 18190)"
    (
        set -a; source /etc/default/doctrove-model; DOCTROVE_MODEL_PORT="$port"; set +a
        # systemd's ${VAR} is one word, $VAR splits on spaces: as the shell does with these values.
        eval "exec setpriv --reuid=doctrove-model --regid=doctrove-model --init-groups $exec_start"
    ) >"$TEST_DIR.model_package.log" 2>&1 &
    pid=$!
    wait_started "$pid" "$TEST_DIR.model_package.log" "^doctrove-model serving" "the packaged model server" || return 1
    ss -Hltn "sport = :$port" | awk '{print $4}' | grep -qx "127.0.0.1:$port" \
        || { ss -ltn; echo "the packaged model server listens beyond 127.0.0.1" >&2; kill "$pid"; return 1; }
    [[ "$(ps -o user= -p "$pid")" == doctrove-model ]] || { echo "it does not run as doctrove-model" >&2; kill "$pid"; return 1; }
    python3 - "$reference" "http://127.0.0.1:$port/v1/embeddings" <<'PY' || { kill "$pid"; return 1; }
import json, math, sys, urllib.request
reference = json.load(open(sys.argv[1]))
body = json.dumps({"model": reference["model"], "input": reference["texts"]}).encode()
request = urllib.request.Request(sys.argv[2], body, {"Content-Type": "application/json"})
served = [d["embedding"] for d in json.load(urllib.request.urlopen(request))["data"]]
def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
lowest = min(cosine(a, b) for a, b in zip(served, reference["vectors"]))
print(f"packaged model server: {len(served)} texts, lowest cosine to sentence-transformers' {lowest:.6f}")
sys.exit(0 if len(served) == len(reference["vectors"]) and lowest >= 0.999 else 1)
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true

    files="$(dpkg-query -L doctrove-model | grep -v '^/etc/default/doctrove-model$')"
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq doctrove-model >/dev/null
    local left=()
    for f in $files; do [[ -f "$f" ]] && left+=("$f"); done
    ((${#left[@]} == 0)) || { echo "apt-get remove doctrove-model left ${left[*]}" >&2; return 1; }
    [[ -f /etc/default/doctrove-model ]] || { echo "apt-get remove took the configuration too" >&2; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq doctrove-model >/dev/null
    [[ ! -e /etc/default/doctrove-model ]] || { echo "purge left /etc/default/doctrove-model" >&2; return 1; }
    ! getent passwd doctrove-model >/dev/null || { echo "purge left the user doctrove-model" >&2; return 1; }
    echo "doctrove-model: unit verified, vectors equal, removed (configuration kept), purged (user and configuration gone)"
}
