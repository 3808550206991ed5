#!/usr/bin/env bash
# Fetches what a Linux partition with the default `linux` keys runs: Debian's arm64
# kernel (the version the `linux-image-arm64` metapackage names today), the
# modules of its virtio drivers, and the `busybox-static` binary its initramfs is
# built around, into target/linux/:
#
#   target/linux/Image      the kernel, an uncompressed arm64 Image
#   target/linux/modules/   from the kernel's package, flat as <name>.ko: virtio_mmio,
#                           virtio_balloon, virtio_console, and virtio_net with what
#                           it needs (net_failover, failover)
#   target/linux/busybox    busybox-static for arm64
#   target/linux/packages   the Debian packages and versions they came from
#
# Idempotent: with all of them there it changes nothing (and asks apt nothing); a
# cache that lacks some (one from before the modules) is fetched again whole.
# Needs root or sudo only the first time, to add the arm64 architecture to dpkg.
#
#   scripts/fetch-linux.sh          fetch if missing, saying what it does
#   scripts/fetch-linux.sh --quiet  the same, printing only what it changes
set -euo pipefail

quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "fetch-linux: $*"; }
# apt-get's own download progress only where a person watches: not with --quiet,
# not in CI, and only on a terminal.
download_quiet=(-qq)
[ "$quiet" = 0 ] && [ -z "${CI:-}" ] && [ -t 1 ] && download_quiet=()

cd "$(dirname "$0")/.."
cache=target/linux
# The kernel modules kept, as paths under the package's lib/modules/<version>/.
modules="kernel/drivers/virtio/virtio_mmio.ko
kernel/drivers/virtio/virtio_balloon.ko
kernel/drivers/char/virtio_console.ko
kernel/drivers/net/virtio_net.ko
kernel/drivers/net/net_failover.ko
kernel/net/core/failover.ko"

cached() {
    [ -s "$cache/Image" ] && [ -s "$cache/busybox" ] || return 1
    local module
    for module in $modules; do
        [ -s "$cache/modules/$(basename "$module")" ] || return 1
    done
}

if cached; then
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
say "step 1 of 3: the kernel's metapackage, linux-image-arm64"
apt-get download "${download_quiet[@]}" linux-image-arm64:arm64
kernel_package=$(dpkg-deb -f linux-image-arm64_*.deb Depends |
    tr ',|' '\n\n' | sed -n 's/^ *\(linux-image-[^ ]*-arm64\).*/\1/p' | head -n1)
if [ -z "$kernel_package" ]; then
    echo "fetch-linux: linux-image-arm64 names no linux-image-*-arm64 package" >&2
    exit 1
fi
echo "fetch-linux: step 2 of 3: downloading $kernel_package and busybox-static (arm64)"
apt-get download "${download_quiet[@]}" "$kernel_package:arm64" busybox-static:arm64
say "step 3 of 3: unpacking the kernel, its virtio modules and busybox"

# The modules are under lib/modules/<version>/ (usr/lib/... with a merged /usr);
# tar fails, naming it, if one is not in the package.
patterns=()
for module in $modules; do
    patterns+=("*/modules/*/$module")
done
dpkg-deb --fsys-tarfile "$kernel_package"_*.deb | tar -x --wildcards ./boot "${patterns[@]}"
kernel=$(ls boot/vmlinuz-*)
mkdir modules
for module in $modules; do
    cp "$(find . -path "*/modules/*/$module" | head -n1)" modules/
done
dpkg-deb --fsys-tarfile busybox-static_*.deb | tar -x ./bin/busybox

cd - >/dev/null
mkdir -p "$cache"
cp "$work/$kernel" "$cache/Image.part"
cp "$work/bin/busybox" "$cache/busybox.part"
chmod 0755 "$cache/busybox.part"
rm -rf "$cache/modules.part"
cp -r "$work/modules" "$cache/modules.part"
for deb in "$work"/*.deb; do
    echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"
done > "$cache/packages"
rm -rf "$cache/modules"
mv "$cache/modules.part" "$cache/modules"
mv "$cache/busybox.part" "$cache/busybox"
mv "$cache/Image.part" "$cache/Image"
echo "fetch-linux: wrote $cache/Image ($kernel), its modules in $cache/modules and $cache/busybox"
