#!/usr/bin/env bash
# Build pichat_<version>_all.deb inside a cached Debian 13 (trixie) root filesystem,
# then run Debian 13's lintian on it; any error or warning fails the build.
#
# usage: packaging/build-deb.sh [--out DIR] [--version VERSION]
#   --out DIR          where the .deb and lintian's report go (default: dist)
#   --version VERSION  build as VERSION: adds a changelog entry and sets
#                      pichat.__version__ in the build's copy of the source (the
#                      upgrade test uses this); the checkout is never changed.
#
# The source is the working tree (tracked and untracked files git does not ignore),
# with packaging/debian as debian/. The cached root (.cache/trixie/build, made by
# tests/system/roots.py) is only read: the build runs on an overlay of it.
# Needs root, debootstrap, unshare (util-linux) and python3.
set -euo pipefail

out=dist
version=
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        -h|--help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
python=${PYTHON:-python3}
root=$("$python" -m tests.system build)
# Debian's tools from here on, not pyenv's or a venv's.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8

work=$(mktemp -d "${TMPDIR:-/tmp}/pichat-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/upper/build/pichat" "$work/ovl" "$work/merged"
src=$work/upper/build/pichat

# The working tree as it is, so uncommitted changes are built too.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' file; do
            [ -e "$file" ] && printf '%s\0' "$file"
        done |
        tar --null -T - -cf - | tar -xf - -C "$src"
else
    tar --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./dist \
        --exclude=./build --exclude=./var -cf - . | tar -xf - -C "$src"
fi
rm -rf "$src/debian"
cp -a packaging/debian "$src/debian"

if [ -n "$version" ]; then
    maintainer=$(sed -n 's/^ -- \(.*>\)  .*$/\1/p' "$src/debian/changelog" | head -n 1)
    {
        printf 'pichat (%s) unstable; urgency=medium\n\n' "$version"
        printf '  * Rebuild as version %s.\n\n' "$version"
        printf ' -- %s  %s\n\n' "$maintainer" "$(date -R)"
        cat "$src/debian/changelog"
    } >"$work/changelog"
    mv "$work/changelog" "$src/debian/changelog"
    sed -i "s/^__version__ = .*/__version__ = \"$version\"/" "$src/pichat/__init__.py"
fi

# Hold the root (shared lock) while the overlay uses it, so no rebuild replaces it.
exec 9<"$root.lock"
flock -s 9
unshare --mount --propagation private sh -eu -c '
    root=$1 work=$2
    m=$work/merged
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$work/upper,workdir=$work/ovl" "$m"
    mount -t proc proc "$m/proc"
    mount -t sysfs sysfs "$m/sys"
    mount --rbind /dev "$m/dev"
    # -d: the minbase root lacks build-essential, which an Architecture: all
    # package built with debhelper does not need.
    chroot "$m" sh -euc "cd /build/pichat && dpkg-buildpackage -us -uc -b -d" >"$work/build.log" 2>&1 || {
        cat "$work/build.log" >&2
        exit 1
    }
    # As an unprivileged user, as lintian prefers; informational and pedantic
    # tags are shown too, but only errors and warnings fail the build.
    chroot --userspec=nobody:nogroup "$m" env HOME=/tmp sh -euc "cd /build && \
        lintian --display-level \">=pedantic\" --fail-on error,warning pichat_*.changes" \
        >"$work/lintian.txt" 2>&1
' sh "$root" "$work" || {
    status=$?
    [ -s "$work/lintian.txt" ] && { echo "lintian:" >&2; cat "$work/lintian.txt" >&2; }
    exit $status
}

mkdir -p "$out"
deb=$(cd "$work/upper/build" && ls pichat_*_all.deb)
cp "$work/upper/build/$deb" "$out/$deb"
cp "$work/lintian.txt" "$out/${deb%.deb}.lintian.txt"
echo "built $out/$deb ($(du -k "$out/$deb" | cut -f1) KiB)"
if [ -s "$work/lintian.txt" ]; then
    echo "lintian (no errors or warnings; notes follow):"
    cat "$work/lintian.txt"
else
    echo "lintian: clean"
fi
