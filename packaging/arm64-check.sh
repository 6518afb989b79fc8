#!/usr/bin/env bash
# The .deb on the Pi's CPU without a Pi: install dist/pichat_<version>_all.deb in an
# emulated arm64 Debian 13 root (qemu user mode), run the daemon there and hold a
# chat round trip with it over the host's loopback.
#
# usage: packaging/arm64-check.sh [DEB]     (default: the newest dist/pichat_*_all.deb)
#
# systemd does not boot under qemu user mode, so the daemon runs chrooted, as
# pichat.service would start it (same command, same conffile). The arm64 root with
# Python and pichat's dependencies is cached in .cache/trixie/arm64 (first run: about
# 5 minutes); each check installs the package in a throw-away overlay of it.
# Needs root; installs qemu-user-static and binfmt-support when missing.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
venv_python=$repo/.venv/bin/python
deb=${1:-$(ls -t dist/pichat_*_all.deb 2>/dev/null | head -n 1)}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "arm64-check: no .deb (run make deb)" >&2; exit 2; }
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")

export PATH_DEBIAN=/usr/sbin:/usr/bin:/sbin:/bin
missing=
for package in qemu-user-static binfmt-support; do
    dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' ||
        missing="$missing $package"
done
if [ -n "$missing" ]; then
    echo "arm64-check: installing$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
PATH=$PATH_DEBIAN update-binfmts --enable qemu-aarch64 2>/dev/null || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] ||
    { echo "arm64-check: binfmt_misc has no qemu-aarch64 entry" >&2; exit 1; }

root=$(python3 -m tests.system arm64)
port=$("$venv_python" -c 'from tests.system import free_port; print(free_port())')
work=$(mktemp -d "${TMPDIR:-/tmp}/pichat-arm64.XXXXXX")
daemon=
cleanup() {
    if [ -n "$daemon" ]; then
        kill "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/upper/tmp" "$work/ovl" "$work/merged"
cp "$deb" "$work/upper/tmp/"

# Hold the cached root (shared lock) while the overlay uses it.
exec 9<"$root.lock"
flock -s 9
# One private mount namespace for the overlay, the install and the daemon: it all
# disappears with the daemon.
unshare --mount --propagation private env -i PATH=$PATH_DEBIAN LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive sh -euc '
    root=$1 work=$2 deb=$3 port=$4
    m=$work/merged
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$work/upper,workdir=$work/ovl" "$m"
    mount -t proc proc "$m/proc"
    mount -t sysfs sysfs "$m/sys"
    mount --rbind /dev "$m/dev"
    echo "arm64-check: $(chroot "$m" dpkg --print-architecture) root, $(chroot "$m" uname -m)"
    chroot "$m" apt-get install -y -q --no-install-recommends "/tmp/$deb" >"$work/apt.log" 2>&1 ||
        { cat "$work/apt.log"; exit 1; }
    # What systemd would do: StateDirectory=pichat.
    mkdir -p "$m/var/lib/pichat"
    exec chroot "$m" env PICHAT_HOST=127.0.0.1 PICHAT_PORT="$port" \
        /usr/bin/pichat serve --config /etc/pichat/pichat.toml
' sh "$root" "$work" "$(basename "$deb")" "$port" >"$work/daemon.log" 2>&1 &
daemon=$!

"$venv_python" - "$port" "$daemon" "$work/daemon.log" <<'EOF'
import asyncio
import os
import sys
import time
import urllib.error

from tests.system.client import get_json, round_trip

port, daemon, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
# Emulated, the installation and Python's start take minutes, not seconds.
deadline = time.monotonic() + 600
while True:
    try:
        health = get_json(port, "/healthz")
        break
    except (urllib.error.URLError, ConnectionError):
        if time.monotonic() > deadline or not os.path.exists(f"/proc/{daemon}"):
            sys.exit(f"arm64-check: pichat did not answer:\n{open(log).read()}")
        time.sleep(1)
welcome, message = asyncio.run(round_trip(port))
print(f"arm64-check: pichat {health['version']} answered /healthz; chat round trip ok "
      f"(room {welcome['room']!r}, message id {message['id']})")
EOF
echo "arm64-check: daemon log:"
sed 's/^/  /' "$work/daemon.log"
