#!/usr/bin/env bash
# Reads or writes the test guest's marker block on a disk image from the host
# (the VM using the image must be stopped for write; read works while it runs).
#
#   scripts/guest-marker.sh read  DISK                   prints the block's lines
#   scripts/guest-marker.sh write DISK MARKER [HOSTNAME]  replaces the block
#
# The block: 4096 bytes at byte offset (virtual size - 1 MiB), text lines
# "MARKER=<text>" then optionally "HOSTNAME=<name>", NUL padded. DISK may be
# qcow2 or raw (detected by qemu-img). See testdata/guest/README.md.
set -euo pipefail

usage() {
	echo "usage: $0 read DISK | write DISK MARKER [HOSTNAME]" >&2
	exit 2
}

# image_info DISK prints "FORMAT SIZE" (SIZE = virtual size in bytes).
image_info() {
	local json fmt size
	json=$(qemu-img info -U --output=json "$1")
	fmt=$(sed -n 's/^ *"format": "\([^"]*\)".*/\1/p' <<<"$json" | head -n 1)
	size=$(sed -n 's/^ *"virtual-size": \([0-9]*\).*/\1/p' <<<"$json" | head -n 1)
	[ -n "$fmt" ] && [ -n "$size" ] || {
		echo "$0: cannot read format and size of $1" >&2
		exit 1
	}
	echo "$fmt $size"
}

[ $# -ge 2 ] || usage
cmd=$1 disk=$2
read -r fmt size < <(image_info "$disk")
if [ "$size" -lt $((2 * 1048576)) ]; then
	echo "$0: $disk is smaller than 2 MiB: no room for a marker block" >&2
	exit 1
fi
offset=$((size - 1048576))
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "$cmd" in
read)
	[ $# -eq 2 ] || usage
	# A raw window of 4096 bytes at the offset, over the image's own format
	# (qemu-img dd cannot skip to an offset in QEMU 7.2).
	qemu-img convert -U -O raw --image-opts \
		"driver=raw,offset=$offset,size=4096,file.driver=$fmt,file.file.driver=file,file.file.filename=${disk//,/,,}" \
		"$tmp/block"
	tr -d '\000' <"$tmp/block"
	;;
write)
	[ $# -ge 3 ] && [ $# -le 4 ] || usage
	case "$3${4:-}" in *$'\n'* | *$'\r'*)
		echo "$0: marker and hostname must be one line each" >&2
		exit 1
		;;
	esac
	{
		printf 'MARKER=%s\n' "$3"
		[ -z "${4:-}" ] || printf 'HOSTNAME=%s\n' "$4"
	} >"$tmp/text"
	[ "$(stat -c %s "$tmp/text")" -le 4096 ] || {
		echo "$0: marker block longer than 4096 bytes" >&2
		exit 1
	}
	cp "$tmp/text" "$tmp/block"
	truncate -s 4096 "$tmp/block"
	qemu-io -f "$fmt" -c "write -q -s $tmp/block $offset 4096" "$disk"
	;;
*) usage ;;
esac
