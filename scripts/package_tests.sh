# The Debian packages' part of `make test` (sourced by test.sh, after lib.sh): their file lists,
# installing the extension from its package, and the model server's package from installation
# to purge.

extension_deb() { echo "$ROOT/dist/postgresql-$1-doctrove-embed_${DEB_VERSION}_amd64.deb"; }
MODEL_DEB="$ROOT/dist/doctrove-model_${DEB_VERSION}_amd64.deb"

# check_file_list DEB PREFIX...: every path DEB installs lies under one of PREFIXes (or is one of
# their parents), is owned by root, is a plain file or folder writable by no one else with no
# setuid, setgid or sticky bit, and names no build folder.
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
            [[ "$mode" =~ ^[-d][-r][-w][-x][-r]-[-x][-r]-[-x]$ ]] \
                || { echo "$deb: $path has mode $mode (a link, writable by others, or setuid, setgid or sticky)" >&2; bad=1; }
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
        dpkg-deb -x "$deb" "$unpacked" || { rm -rf "$unpacked"; return 1; }
        install -m 644 "$unpacked/usr/lib/postgresql/$v/lib/"* "$("$PG_CONFIG" --pkglibdir)/"
        install -m 644 "$unpacked/usr/share/postgresql/$v/extension/"* "$("$PG_CONFIG" --sharedir)/extension/"
        rm -rf "$unpacked"
        # Without that PostgreSQL major installed from packages, apt refuses the package.
        if LC_ALL=C apt-get install -s "$deb" >"$TEST_DIR.apt.log" 2>&1; then
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
# needs, the dynamic loader's "undefined symbol" when it needs one the server lacks (guc_free of
# 16 and later, in 15; pqsignal of 15, in 18).
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

# check_extension_package_removal: `apt-get remove` leaves no doctrove_embed file in PostgreSQL 15;
# the package is installed again afterwards, as the suites left it.
check_extension_package_removal() {
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq postgresql-15-doctrove-embed >/dev/null
    local left
    left="$(find /usr/lib/postgresql/15 /usr/share/postgresql/15 /usr/share/doc/postgresql-15-doctrove-embed \
        -name '*doctrove*' 2>/dev/null || true)"
    [[ -z "$left" ]] || { echo "apt-get remove left: $left" >&2; return 1; }
    echo "apt-get remove postgresql-15-doctrove-embed: no doctrove_embed file left"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$(extension_deb 15)" >/dev/null
}

# unit_setting UNIT KEY: the value of KEY= in the unit file (the last one, as systemd takes it).
unit_setting() { sed -n "s/^$2=//p" "$1" | tail -1; }

# unit_command UNIT: ExecStart's words as systemd expands them with the variables of the unit's
# EnvironmentFile: ${VAR} stays one word, a word that is $VAR alone splits on white space; one
# word per line. Nothing is evaluated by a shell.
unit_command() {
    local unit="$1" word name split
    (
        set -a
        # shellcheck disable=SC1090
        source "$(unit_setting "$unit" EnvironmentFile)"
        set +a
        read -ra words <<<"$(unit_setting "$unit" ExecStart)"
        for word in "${words[@]}"; do
            if [[ "$word" =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
                read -ra split <<<"${!BASH_REMATCH[1]-}"
                ((${#split[@]} == 0)) || printf '%s\n' "${split[@]}"
                continue
            fi
            while [[ "$word" =~ \$\{([A-Za-z_][A-Za-z0-9_]*)\} ]]; do
                name="${BASH_REMATCH[1]}"
                word="${word//"\${$name}"/${!name-}}"
            done
            printf '%s\n' "$word"
        done
    )
}

# model_package_test REFERENCE_JSON: installs doctrove-model, checks its unit (systemd-analyze
# verify and security, the loopback address and the hardening it must keep), runs the unit's
# ExecStart as written, as the unit's user and group with its EnvironmentFile's settings, and
# compares the vectors it serves with sentence-transformers', then removes and purges the package.
model_package_test() {
    local reference="$1" unit=/lib/systemd/system/doctrove-model.service port pid files user group line
    [[ ! -e /etc/default/doctrove-model ]] || DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq doctrove-model >/dev/null
    check_file_list "$MODEL_DEB" /usr/bin/doctrove-model /usr/share/doctrove-model /usr/share/doc/doctrove-model \
        /usr/share/man/man1/doctrove-model.1.gz /usr/share/lintian/overrides/doctrove-model \
        /lib/systemd/system/doctrove-model.service /etc/default/doctrove-model
    local listing
    listing="$(dpkg-deb -c "$MODEL_DEB")"
    for line in model.safetensors tokenizer.json config.json modules.json 1_Pooling/config.json; do
        grep -q " \./usr/share/doctrove-model/all-MiniLM-L6-v2/$line$" <<<"$listing" \
            || { echo "$MODEL_DEB lacks the model's $line" >&2; return 1; }
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$MODEL_DEB" >/dev/null

    # The unit: no warning from systemd, the address fixed, the hardening kept.
    systemd-analyze verify "$unit" >"$TEST_DIR.unit.log" 2>&1 && [[ ! -s "$TEST_DIR.unit.log" ]] \
        || { cat "$TEST_DIR.unit.log"; echo "systemd-analyze verify: the unit has problems" >&2; return 1; }
    # The threshold is on systemd's 0 to 100 scale, which it prints divided by ten: 3.0 here.
    systemd-analyze security --offline=yes --threshold=30 "$unit" >"$TEST_DIR.unit.log" 2>&1 \
        || { tail -5 "$TEST_DIR.unit.log"; echo "systemd-analyze security: the unit is exposed above 3.0" >&2; return 1; }
    echo "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$TEST_DIR.unit.log")"
    for line in "ExecStart=/usr/bin/doctrove-model --listen 127.0.0.1:\${DOCTROVE_MODEL_PORT} \$DOCTROVE_MODEL_OPTIONS" \
        "IPAddressDeny=any" "IPAddressAllow=localhost" "NoNewPrivileges=yes" "ProtectSystem=strict" \
        "EnvironmentFile=/etc/default/doctrove-model"; do
        grep -qxF "$line" "$unit" || { echo "the unit lacks $line" >&2; return 1; }
    done
    user="$(unit_setting "$unit" User)"; group="$(unit_setting "$unit" Group)"
    [[ "$(getent passwd "$user" | cut -d: -f3,4,7)" =~ ^[0-9]{1,3}:$(getent group "$group" | cut -d: -f3):/usr/sbin/nologin$ ]] \
        || { echo "$user is not a system user of group $group without a login: $(getent passwd "$user")" >&2; return 1; }
    [[ "$(stat -c '%a %U' /etc/default/doctrove-model)" == "600 root" ]] \
        || { echo "/etc/default/doctrove-model is readable by others: $(stat -c '%a %U' /etc/default/doctrove-model)" >&2; return 1; }
    dpkg-query --control-show doctrove-model prerm | grep -q "deb-systemd-invoke stop 'doctrove-model.service'" \
        || { echo "removing doctrove-model would not stop its service" >&2; return 1; }

    # The unit's ExecStart, the port moved to a free one (in a copy of its EnvironmentFile).
    port="$(free_port 18190)"
    local command=() test_unit="$TEST_DIR.unit" test_env="$TEST_DIR.unit.env"
    sed "s/^DOCTROVE_MODEL_PORT=.*/DOCTROVE_MODEL_PORT=$port/" /etc/default/doctrove-model >"$test_env"
    sed "s|^EnvironmentFile=.*|EnvironmentFile=$test_env|" "$unit" >"$test_unit"
    mapfile -t command < <(unit_command "$test_unit")
    [[ "${command[0]}" == /usr/bin/doctrove-model && "${command[*]}" == *"--listen 127.0.0.1:$port"* ]] \
        || { echo "the unit's command is not the packaged server on 127.0.0.1: ${command[*]}" >&2; return 1; }
    (
        set -a; source "$test_env"; set +a
        exec setpriv --reuid="$user" --regid="$group" --init-groups "${command[@]}"
    ) >"$TEST_DIR.model_package.log" 2>&1 &
    pid=$!
    MODEL_PACKAGE_PID=$pid   # stopped by test.sh's cleanup if a check below fails
    wait_started "$pid" "$TEST_DIR.model_package.log" "^doctrove-model serving" "the packaged model server"
    local listening
    listening="$(ss -Hltnp | grep "pid=$pid," | awk '{print $4}' | sort -u | paste -sd ' ')"
    [[ "$listening" == "127.0.0.1:$port" ]] \
        || { echo "the packaged model server listens on '$listening', not 127.0.0.1:$port alone" >&2; return 1; }
    [[ "$(ps -o user= -p "$pid")" == "$user" ]] || { echo "it does not run as $user" >&2; return 1; }
    tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "DOCTROVE_MODEL_DIR=/usr/share/doctrove-model/all-MiniLM-L6-v2" \
        || { echo "it does not serve the packaged model folder" >&2; return 1; }
    python3 - "$reference" "http://127.0.0.1:$port/v1/embeddings" <<'PY'
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
    MODEL_PACKAGE_PID=

    files="$(dpkg-query -L doctrove-model | grep -v '^/etc/default/doctrove-model$')"
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq doctrove-model >/dev/null
    local left=() f
    for f in $files; do [[ -f "$f" ]] && left+=("$f"); done
    ((${#left[@]} == 0)) || { echo "apt-get remove doctrove-model left ${left[*]}" >&2; return 1; }
    [[ -f /etc/default/doctrove-model ]] || { echo "apt-get remove took the configuration too" >&2; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq doctrove-model >/dev/null
    [[ ! -e /etc/default/doctrove-model ]] || { echo "purge left /etc/default/doctrove-model" >&2; return 1; }
    ! getent passwd "$user" >/dev/null || { echo "purge left the user $user" >&2; return 1; }
    echo "doctrove-model: unit verified, vectors equal, removed (configuration kept), purged (user and configuration gone)"
}
