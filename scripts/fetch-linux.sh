#!/usr/bin/env bash
# Fetches what a Linux partition with the default `linux` keys runs: Debian's arm64
# kernel (the version the `linux-image-arm64` metapackage names today) and the
# `busybox-static` binary its initramfs is built around, into target/linux/:
#
#   target/linux/Image     the kernel, an uncompressed arm64 Image
#   target/linux/busybox   busybox-static for arm64
#   target/linux/packages  the Debian packages and versions they came from
#
# Idempotent: with both files there it changes nothing (and asks apt nothing).
# Needs root or sudo only the first time, to add the arm64 architecture to dpkg.
#
#   scripts/fetch-linux.sh          fetch if missing, saying what it does
#   scripts/fetch-linux.sh --quiet  the same, printing only what it changes
set -euo pipefail

quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "fetch-linux: $*"; }

cd "$(dirname "$0")/.."
cache=target/linux
if [ -s "$cache/Image" ] && [ -s "$cache/busybox" ]; then
    say "ready: $(paste -sd, "$cache/packages" | sed 's/,/, /g')"
    exit 0
fi

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "fetch-linux: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "fetch-linux: adding the arm64 architecture to dpkg"
    sudo_if_needed dpkg --add-architecture arm64
    sudo_if_needed apt-get update -qq
elif ! apt-cache show linux-image-arm64:arm64 >/dev/null 2>&1; then
    sudo_if_needed apt-get update -qq
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/septum-linux.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt drops root for downloads: let its user write here.
chmod 0777 "$work"
cd "$work"

# The metapackage depends on exactly one versioned kernel package: that is the one.
apt-get download -qq linux-image-arm64:arm64
kernel_package=$(dpkg-deb -f linux-image-arm64_*.deb Depends |
    tr ',|' '\n\n' | sed -n 's/^ *\(linux-image-[^ ]*-arm64\).*/\1/p' | head -n1)
if [ -z "$kernel_package" ]; then
    echo "fetch-linux: linux-image-arm64 names no linux-image-*-arm64 package" >&2
    exit 1
fi
echo "fetch-linux: downloading $kernel_package and busybox-static (arm64)"
apt-get download -qq "$kernel_package:arm64" busybox-static:arm64

dpkg-deb --fsys-tarfile "$kernel_package"_*.deb | tar -x ./boot
kernel=$(ls boot/vmlinuz-*)
dpkg-deb --fsys-tarfile busybox-static_*.deb | tar -x ./bin/busybox

cd - >/dev/null
mkdir -p "$cache"
cp "$work/$kernel" "$cache/Image.part"
cp "$work/bin/busybox" "$cache/busybox.part"
chmod 0755 "$cache/busybox.part"
for deb in "$work"/*.deb; do
    echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"
done > "$cache/packages"
mv "$cache/busybox.part" "$cache/busybox"
mv "$cache/Image.part" "$cache/Image"
echo "fetch-linux: wrote $cache/Image ($kernel) and $cache/busybox"
