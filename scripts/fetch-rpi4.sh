#!/usr/bin/env bash
# Fetches what the Raspberry Pi 4 board needs and the repository must not hold,
# into target/rpi4/:
#
#   target/rpi4/bcm2711-rpi-4-b.dtb  the board's device tree, from Debian's arm64
#                                    kernel package (linux-image-<ver>-arm64)
#   target/rpi4/firmware/            start4.elf, fixup4.dat and bcm2711 boot files from
#                                    Debian's `raspi-firmware` (bookworm non-free-firmware)
#   target/rpi4/packages             the Debian packages and versions they came from
#
# Idempotent: with all of them there it changes nothing (and asks apt nothing).
# Needs root or sudo only the first time: to add the arm64 architecture to dpkg
# and bookworm's non-free-firmware component to apt's sources.
#
#   scripts/fetch-rpi4.sh          fetch if missing, saying what it does
#   scripts/fetch-rpi4.sh --quiet  the same, printing only what it changes
set -euo pipefail

quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "fetch-rpi4: $*"; }
download_quiet=(-qq)
[ "$quiet" = 0 ] && [ -z "${CI:-}" ] && [ -t 1 ] && download_quiet=()

cd "$(dirname "$0")/.."
cache=target/rpi4
firmware_files="start4.elf fixup4.dat"

cached() {
    [ -s "$cache/bcm2711-rpi-4-b.dtb" ] || return 1
    local file
    for file in $firmware_files; do
        [ -s "$cache/firmware/$file" ] || return 1
    done
}

if cached; then
    say "ready: $(paste -sd, "$cache/packages" | sed 's/,/, /g')"
    exit 0
fi

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "fetch-rpi4: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

updated=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "fetch-rpi4: adding the arm64 architecture to dpkg"
    sudo_if_needed dpkg --add-architecture arm64
    updated=1
fi
# raspi-firmware is in bookworm's non-free-firmware component: add it with the
# mirror and keyring of the existing bookworm entry.
firmware_list=/etc/apt/sources.list.d/septum-non-free-firmware.sources
if ! grep -rqs "non-free-firmware" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "fetch-rpi4: adding bookworm's non-free-firmware component to apt sources"
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    keyring=$(awk '/^Signed-By:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    uri=${uri:-http://deb.debian.org/debian}
    keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
    printf 'Types: deb\nURIs: %s\nSuites: bookworm\nComponents: non-free-firmware\nSigned-By: %s\n' \
        "$uri" "$keyring" | sudo_if_needed tee "$firmware_list" >/dev/null
    updated=1
fi
if [ "$updated" = 1 ] || ! apt-cache show raspi-firmware linux-image-arm64:arm64 >/dev/null 2>&1; then
    sudo_if_needed apt-get update -qq
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/septum-rpi4.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt drops root for downloads: let its user write here.
chmod 0777 "$work"
cd "$work"

say "step 1 of 3: the kernel's metapackage, linux-image-arm64"
apt-get download "${download_quiet[@]}" linux-image-arm64:arm64
kernel_package=$(dpkg-deb -f linux-image-arm64_*.deb Depends |
    tr ',|' '\n\n' | sed -n 's/^ *\(linux-image-[^ ]*-arm64\).*/\1/p' | head -n1)
if [ -z "$kernel_package" ]; then
    echo "fetch-rpi4: linux-image-arm64 names no linux-image-*-arm64 package" >&2
    exit 1
fi
echo "fetch-rpi4: step 2 of 3: downloading $kernel_package (arm64) and raspi-firmware"
apt-get download "${download_quiet[@]}" "$kernel_package:arm64" raspi-firmware
say "step 3 of 3: unpacking the device tree and the boot firmware"
dpkg-deb --fsys-tarfile "$kernel_package"_*.deb | tar -x --wildcards '*/broadcom/bcm2711-rpi-4-b.dtb'
mkdir firmware-tree
dpkg-deb -x raspi-firmware_*.deb firmware-tree
mkdir firmware
for file in $firmware_files; do
    path=$(find firmware-tree -name "$file" | head -n1)
    if [ -z "$path" ]; then
        echo "fetch-rpi4: raspi-firmware has no $file" >&2
        exit 1
    fi
    cp "$path" firmware/
done

cd - >/dev/null
mkdir -p "$cache"
rm -rf "$cache/firmware.part"
cp -r "$work/firmware" "$cache/firmware.part"
cp "$(find "$work" -path '*/broadcom/bcm2711-rpi-4-b.dtb' | head -n1)" "$cache/dtb.part"
for deb in "$work"/*.deb; do
    echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"
done > "$cache/packages"
rm -rf "$cache/firmware"
mv "$cache/firmware.part" "$cache/firmware"
mv "$cache/dtb.part" "$cache/bcm2711-rpi-4-b.dtb"
echo "fetch-rpi4: wrote $cache/bcm2711-rpi-4-b.dtb and $cache/firmware/ ($firmware_files)"
