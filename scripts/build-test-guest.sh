#!/usr/bin/env bash
# Builds the tiny Stagehand test guest from Debian packages only:
#
#   OUTDIR/vmlinuz      Debian's cloud kernel
#   OUTDIR/initrd.img   busybox-static initramfs (cpio.gz), see testdata/guest/rootfs
#   OUTDIR/disk.qcow2   64 MiB BIOS-bootable disk (MBR, FAT16, syslinux, same kernel+initrd)
#   OUTDIR/data.qcow2   16 MiB data disk for direct kernel boot
#   OUTDIR/cmdline      the kernel command line to use with -kernel/-initrd
#
# Usage: scripts/build-test-guest.sh [OUTDIR]   (default testdata/guest/out)
#
# Idempotent: does nothing when every output is newer than this script and
# its inputs. Installs missing Debian packages with apt-get. Needs no loop
# device: the FAT partition is built as a file with mtools and syslinux, then
# placed into the disk image with dd. Safe to run concurrently (flock).
set -euo pipefail
export MTOOLS_SKIP_CHECK=1 # mtools: no geometry checks on a plain image file

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/testdata/guest
OUT=${1:-$SRC/out}
SELF=$ROOT/scripts/build-test-guest.sh

# The kernel command line for both boot styles. console=ttyS0 carries the
# STAGEHAND-* lines; panic=1 reboots (with -no-reboot: QEMU exits) instead of
# hanging if PID 1 dies; cryptomgr.notests skips the crypto self-tests, about
# 0.7 s of guest time under TCG.
CMDLINE="console=ttyS0 quiet panic=1 mitigations=off cryptomgr.notests"

# Modules the guest loads, in this order (virtio_ring before virtio, ...).
# button + evdev make the ACPI power button readable for system_powerdown.
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
	failover net_failover virtio_net virtio_blk button evdev)
# Loaded only when a cloud-init seed (a cidata ISO 9660 disk) is attached, so
# a boot without one costs nothing more.
SEED_MODULES=(cdrom isofs)

DISK_MIB=64 # bootable disk
DATA_MIB=16 # data-only disk
MARKER_BOOT=boot-initial
MARKER_DATA=data-initial

log() { echo "build-test-guest: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# ensure_packages installs the Debian packages that are not installed yet.
ensure_packages() {
	local missing=() p installed
	# dpkg-query fails for a package it has never heard of: that one is missing.
	installed=$(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null | awk '/ install ok installed$/ { print $1 }' || true)
	for p in "$@"; do
		grep -qx "$p" <<<"$installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# newest_cloud_kernel prints the version of the newest cloud kernel that has
# both /boot/vmlinuz-V and /lib/modules/V.
newest_cloud_kernel() {
	local f v
	for f in /boot/vmlinuz-*-cloud-amd64; do
		[ -e "$f" ] || continue
		v=${f#/boot/vmlinuz-}
		[ -d "/lib/modules/$v" ] && echo "$v"
	done | sort -V | tail -n 1
}

# find_module NAME prints the path of module NAME (.ko, maybe compressed).
find_module() {
	local dashed=${1//_/-}
	find "/lib/modules/$KVER/kernel" \( -name "$1.ko*" -o -name "$dashed.ko*" \) -print -quit
}

# copy_module SRC DST copies a module, decompressing it: busybox insmod wants
# a plain .ko.
copy_module() {
	case "$1" in
	*.ko) cp "$1" "$2" ;;
	*.ko.xz) xz -dc "$1" >"$2" ;;
	*.ko.zst) zstd -qdc "$1" >"$2" ;;
	*.ko.gz) gzip -dc "$1" >"$2" ;;
	*) die "unknown module format: $1" ;;
	esac
}

# add_modules STAGE LIST MODULE... copies the modules into the initramfs and
# writes their load order to STAGE/lib/modules/LIST, leaving out those the
# kernel has built in.
add_modules() {
	local stage=$1 list=$2 m f
	shift 2
	: >"$stage/lib/modules/$list"
	for m in "$@"; do
		if grep -Eq "/(${m}|${m//_/-})\.ko" "/lib/modules/$KVER/modules.builtin" 2>/dev/null; then
			log "module $m is built into $KVER"
			continue
		fi
		f=$(find_module "$m")
		[ -n "$f" ] || die "module $m not found in /lib/modules/$KVER"
		copy_module "$f" "$stage/lib/modules/$KVER/$m.ko"
		echo "$m" >>"$stage/lib/modules/$list"
	done
}

build_initrd() {
	local stage=$1 dst=$2 p
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,var/log,lib/modules/"$KVER"}
	cp /bin/busybox "$stage/bin/busybox"
	# One symlink per applet, at the path busybox itself names.
	while read -r p; do
		p=${p#/}
		[ "$p" = bin/busybox ] && continue
		mkdir -p "$stage/$(dirname "$p")"
		ln -sf /bin/busybox "$stage/$p"
	done < <(/bin/busybox --list-full)
	cp -a "$SRC/rootfs/." "$stage/"
	chmod 0755 "$stage/init" "$stage/sbin/stagehand-service" "$stage/sbin/stagehand-http" "$stage/etc/udhcpc.script"
	chmod 1777 "$stage/tmp"

	add_modules "$stage" stagehand.order "${MODULES[@]}"
	add_modules "$stage" stagehand.seed.order "${SEED_MODULES[@]}"

	# The kernel opens /dev/console for PID 1 before devtmpfs is mounted.
	# Without root there are no nodes: /init then gets its console only
	# once it has mounted devtmpfs, which is enough.
	if [ "$(id -u)" -eq 0 ]; then
		mknod -m 600 "$stage/dev/console" c 5 1
		mknod -m 666 "$stage/dev/null" c 1 3
	fi

	(cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
		cpio --null --create --format=newc --owner=0:0 --quiet) | gzip -9 -n >"$dst"
}

# build_boot_disk DIR DST: MBR + one active FAT16 partition (1 MiB .. end-1 MiB)
# holding syslinux, the kernel and the initrd; marker block in the last MiB.
build_boot_disk() {
	local dir=$1 dst=$2
	local raw=$dir/disk.raw fat=$dir/part.fat
	local start=2048                                    # sectors: partition at 1 MiB
	local sectors=$((DISK_MIB * 2048 - start - 2048)) # leave the last MiB outside
	cat >"$dir/syslinux.cfg" <<-EOF
		SERIAL 0 115200
		DEFAULT stagehand
		PROMPT 0
		TIMEOUT 0
		LABEL stagehand
		  KERNEL /vmlinuz
		  INITRD /initrd.img
		  APPEND $CMDLINE
	EOF
	mkfs.fat -C -F 16 -h "$start" -n STAGEHAND "$fat" $((sectors / 2)) >/dev/null
	mcopy -i "$fat" "$dir/vmlinuz" ::vmlinuz
	mcopy -i "$fat" "$dir/initrd.img" ::initrd.img
	mcopy -i "$fat" "$dir/syslinux.cfg" ::syslinux.cfg
	syslinux --install "$fat"

	truncate -s "${DISK_MIB}M" "$raw"
	printf 'label: dos\n%s,%s,e,*\n' "$start" "$sectors" |
		sfdisk --quiet --no-reread --no-tell-kernel "$raw" >/dev/null
	dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
	dd if="$fat" of="$raw" bs=512 seek="$start" conv=notrunc status=none
	"$ROOT/scripts/guest-marker.sh" write "$raw" "$MARKER_BOOT"
	qemu-img convert -q -f raw -O qcow2 "$raw" "$dst"
	rm -f "$raw" "$fat"
}

# build_data_disk DST: empty qcow2 with the marker block written the way a
# test writes one.
build_data_disk() {
	qemu-img create -q -f qcow2 "$1" "${DATA_MIB}M"
	"$ROOT/scripts/guest-marker.sh" write "$1" "$MARKER_DATA"
}

main() {
	mkdir -p "$OUT"
	exec 9>"$OUT/.lock"
	flock 9

	# genisoimage is not part of the guest: check-test-guest.sh makes a
	# reference cloud-init seed with it.
	ensure_packages linux-image-cloud-amd64 busybox-static cpio syslinux syslinux-common \
		mtools dosfstools fdisk qemu-utils genisoimage

	KVER=$(newest_cloud_kernel)
	[ -n "$KVER" ] || die "no cloud kernel in /boot with modules in /lib/modules"
	local kernel=/boot/vmlinuz-$KVER

	local outputs=(vmlinuz initrd.img disk.qcow2 data.qcow2 cmdline)
	local stamp=$OUT/.stamp o fresh=1
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$KVER $CMDLINE" ]; then
		for o in "${outputs[@]}"; do [ -f "$OUT/$o" ] || fresh=0; done
		if [ $fresh = 1 ] && [ -z "$(find "$SELF" "$ROOT/scripts/guest-marker.sh" "$SRC/rootfs" "$kernel" /bin/busybox \
			/usr/lib/syslinux/mbr/mbr.bin -newer "$stamp" -print -quit)" ]; then
			log "up to date ($OUT, kernel $KVER)"
			return 0
		fi
	fi

	log "building in $OUT (kernel $KVER)"
	tmp=$(mktemp -d "$OUT/.build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT

	cp "$kernel" "$tmp/vmlinuz"
	build_initrd "$tmp/root" "$tmp/initrd.img"
	rm -rf "$tmp/root"
	build_boot_disk "$tmp" "$tmp/disk.qcow2"
	build_data_disk "$tmp/data.qcow2"
	echo "$CMDLINE" >"$tmp/cmdline"

	rm -f "$stamp"
	for o in "${outputs[@]}"; do mv -f "$tmp/$o" "$OUT/$o"; done
	echo "$KVER $CMDLINE" >"$stamp"
	for o in "${outputs[@]}"; do
		log "$(printf '%-11s %9d bytes' "$o" "$(stat -c %s "$OUT/$o")")"
	done
}

main "$@"
