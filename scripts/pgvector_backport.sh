#!/usr/bin/env bash
# Builds postgresql-15-pgvector for Debian 12, which packages no pgvector: a backport of Debian
# trixie's own source package (its debian/ folder, built with dpkg-buildpackage), versioned
# $PGVECTOR_BACKPORT (lib.sh: Debian's backport form with this project's suffix, so that it sorts
# below trixie's own and any official backport). Leaves the .deb in $DEB_DIR and prints its path;
# skips the build when it is there. Every source file is checked against the sha256 pinned below.
# Usage: pgvector_backport.sh (as root; needs debhelper, dpkg-dev and postgresql-server-dev-all).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

UPSTREAM="$PGVECTOR_UPSTREAM"
DEBIAN_REVISION="$PGVECTOR_DEBIAN_REVISION"
BACKPORT="$PGVECTOR_BACKPORT"
MAINTAINER="doctrove_embed maintainers <maintainers@users.noreply.b-seed-e829b631.example>"
declare -A SHA256=(
    [pgvector_$UPSTREAM-$DEBIAN_REVISION.dsc]=a71780bf7ab9901094a3d9869c489b6e2bcb858a8c14a5fa52d159933e016308
    [pgvector_$UPSTREAM.orig.tar.gz]=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0
    [pgvector_$UPSTREAM-$DEBIAN_REVISION.debian.tar.xz]=6cb10bfdee32a093f0711a53d61f63657514d60058ff76a44ae2a4434f9c7ee5
)
DEB="$DEB_DIR/postgresql-15-pgvector_${BACKPORT}_amd64.deb"
if [[ -f "$DEB" ]]; then
    echo "$DEB"
    exit 0
fi

work="$(mktemp -d)"
chmod 755 "$work"
# The build's output goes to a log, shown only when a step fails (set -e stops at that step).
exec 3>&1 >"$work/build.log" 2>&1
trap 'status=$?; ((status == 0)) || cat "$work/build.log" >&2; rm -rf "$work"' EXIT

mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/download"
chmod 755 "$work/download"
echo "deb-src $mirror trixie main" >"$work/sources.list"
aptopts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
         -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/archives"
         -o "APT::Get::List-Cleanup=0")
apt-get "${aptopts[@]}" update -qq
(cd "$work/download" && apt-get "${aptopts[@]}" source -qq --download-only "pgvector=$UPSTREAM-$DEBIAN_REVISION")
for file in "${!SHA256[@]}"; do
    echo "${SHA256[$file]}  $work/download/$file" | sha256sum --check --quiet \
        || { echo "$file does not match its pinned sha256"; exit 1; }
done
dpkg-source -x "$work/download/pgvector_$UPSTREAM-$DEBIAN_REVISION.dsc" "$work/src"
cd "$work/src"
# The backport's changelog entry and maintainer (Debian's team stays as the original one), then
# the package for the PostgreSQL versions installed from Debian (15 on Debian 12).
{
    echo "pgvector ($BACKPORT) bookworm-backports; urgency=medium"
    echo
    echo "  * Rebuild for Debian 12 and PostgreSQL 15 from trixie's source package."
    echo
    echo " -- $MAINTAINER  $(date -R)"
    echo
    cat debian/changelog
} >debian/changelog.new
mv debian/changelog.new debian/changelog
for control in debian/control debian/control.in; do
    sed -i "s/^Maintainer: \(.*\)/Maintainer: $MAINTAINER\nXSBC-Original-Maintainer: \1/" "$control"
done
pg_buildext updatecontrol
# -d: bookworm's dpkg lacks trixie's `architecture-is-64-bit` build dependency. nocheck:
# Debian's installcheck needs every PostgreSQL version packaged (postgresql-all).
DEB_BUILD_OPTIONS="nocheck noautodbgsym" dpkg-buildpackage -us -uc -b -d -Pnocheck
mkdir -p "$DEB_DIR"
mv "$work/postgresql-15-pgvector_${BACKPORT}_amd64.deb" "$DEB"
echo "$DEB" >&3
