#!/usr/bin/env bash
# `make package`: Debian packages in dist/, built with debhelper from what is built here, so that
# a server needs no build tool to install them:
# - postgresql-$PG-doctrove-embed: the library, control file, install script and every upgrade
#   script from `cargo pgrx package`, at the paths of Debian's and the PGDG's PostgreSQL $PG
#   packages (/usr/lib/postgresql/$PG/lib, /usr/share/postgresql/$PG/extension);
# - on 15, postgresql-15-pgvector: the backport of Debian trixie's pgvector (pgvector_backport.sh);
# - doctrove-model: the model server, the default model, a systemd unit and its settings in
#   /etc/default/doctrove-model.
# Each package of ours passes lintian without errors. Usage: PG=N package.sh [--extension-only]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

DIST="$ROOT/dist"
BUILD="$ROOT/target/debian"
mkdir -p "$DIST" "$BUILD"
read -r _ changelog_version _ < <(head -1 packaging/changelog.in)
[[ "$changelog_version" == "($DEB_VERSION)" ]] \
    || { echo "packaging/changelog.in is at $changelog_version, Cargo.toml at $EXTENSION_VERSION: add its entry" >&2; exit 1; }

# debian_tree SOURCE PACKAGE FOLDER: a fresh build tree for SOURCE in $BUILD from
# packaging/FOLDER/debian (@PG@ replaced in names and contents) with README, CHANGELOG and the
# generated changelog and copyright; sets $tree.
debian_tree() {
    local source="$1" package="$2" folder="$3" file
    tree="$BUILD/$source-$EXTENSION_VERSION"
    rm -rf "$tree"
    mkdir -p "$tree/debian" "$tree/stage"
    for file in "packaging/$folder/debian/"*; do
        sed "s/@PG@/$PG/g" "$file" >"$tree/debian/$(basename "${file//@PG@/$PG}")"
    done
    chmod 755 "$tree/debian/rules"
    sed -e "s/@SOURCE@/$source/" -e "s/@PACKAGE@/$package/" packaging/changelog.in >"$tree/debian/changelog"
    cp README.md CHANGELOG.md "$tree/"
}

# build_deb PACKAGE: dpkg-buildpackage in $tree, the .deb moved to dist/ and checked by lintian.
build_deb() {
    local package="$1" deb="$1_${DEB_VERSION}_amd64.deb"
    (cd "$tree" && DEB_BUILD_OPTIONS="noautodbgsym nocheck" dpkg-buildpackage -us -uc -b) \
        >"$tree.log" 2>&1 || { tail -40 "$tree.log"; echo "dpkg-buildpackage failed ($tree.log)" >&2; exit 1; }
    mv "$BUILD/$deb" "$DIST/$deb"
    lintian --fail-on error --suppress-tags-from-file packaging/lintian-overrides "$DIST/$deb" \
        || { echo "lintian found errors in $deb" >&2; exit 1; }
    log "dist/$deb"
}

# --- the extension ------------------------------------------------------------
log "postgresql-$PG-doctrove-embed $DEB_VERSION: cargo pgrx package against $PG_CONFIG"
pgrx_out="$BUILD/pgrx-pg$PG"
rm -rf "$pgrx_out"
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$pgrx_out" >"$BUILD/pgrx-pg$PG.log" 2>&1 \
    || { tail -40 "$BUILD/pgrx-pg$PG.log"; exit 1; }
debian_tree doctrove-embed "postgresql-$PG-doctrove-embed" extension
mkdir -p "$tree/stage/lib" "$tree/stage/extension"
cp "$pgrx_out$("$PG_CONFIG" --pkglibdir)/doctrove_embed.so" "$tree/stage/lib/"
cp "$pgrx_out$("$PG_CONFIG" --sharedir)/extension/doctrove_embed"{.control,--*.sql} "$tree/stage/extension/"
sed "/@MODEL_COPYRIGHT@/d" packaging/copyright.in >"$tree/debian/copyright"
build_deb "postgresql-$PG-doctrove-embed"

[[ "${1:-}" == --extension-only ]] && exit 0

# --- pgvector for Debian 12's PostgreSQL 15 -------------------------------------
if [[ "$PG" == 15 ]]; then
    backport="$(bash scripts/pgvector_backport.sh)"
    cp "$backport" "$DIST/"
    log "dist/$(basename "$backport")"
fi

# --- the model server -------------------------------------------------------------
log "doctrove-model $DEB_VERSION: the release build and $MODEL_DIR"
cargo build -q --release -p doctrove_model
debian_tree doctrove-model doctrove-model model
cp target/release/doctrove-model "$tree/stage/"
env -u DOCTROVE_MODEL_DIR -u DOCTROVE_MODEL_API_KEY help2man --no-info --section 1 \
    --name "local sentence-embedding model with an OpenAI-compatible API" \
    --output "$tree/stage/doctrove-model.1" target/release/doctrove-model
# The model's files as the pinned wheel holds them, each checked against its sha256 (and no other).
(cd "$MODEL_DIR" && sha256sum --check --quiet --strict "$ROOT/packaging/model/all-MiniLM-L6-v2.sha256") \
    || { echo "$MODEL_DIR differs from the model the package pins" >&2; exit 1; }
while read -r _ file; do
    install -D -m 644 "$MODEL_DIR/$file" "$tree/stage/all-MiniLM-L6-v2/$file"
done <packaging/model/all-MiniLM-L6-v2.sha256
mkdir -p "$tree/stage/default"
cp packaging/model/default "$tree/stage/default/doctrove-model"
{
    sed "/@MODEL_COPYRIGHT@/,\$d" packaging/copyright.in
    printf '%s\n' "Files: stage/all-MiniLM-L6-v2/*" \
        "Copyright: sentence-transformers/all-MiniLM-L6-v2 (Nils Reimers and the sentence-transformers team)" \
        "License: Apache-2.0" \
        " On Debian systems the full text of the Apache License 2.0 is in" \
        " /usr/share/common-licenses/Apache-2.0." ""
    sed "1,/@MODEL_COPYRIGHT@/d" packaging/copyright.in
} >"$tree/debian/copyright"
build_deb doctrove-model
