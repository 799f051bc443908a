# Shared shell functions of the Stagehand test guest, sourced by /init, the
# services in /sbin and the DHCP script. Busybox ash only.
#
# Marker block (see testdata/guest/README.md): 4096 bytes starting 1 MiB before
# the end of /dev/vda, text lines KEY=VALUE, NUL padded. It sits outside any
# partition, so the same convention works for data disks and bootable disks.

STAGEHAND_DISK=/dev/vda

log() { echo "$*" >/dev/console; }

# stamp_lines copies stdin to stdout, each line prefixed with the uptime.
stamp_lines() {
	local line up
	while IFS= read -r line; do
		read -r up _ </proc/uptime
		echo "[$up] $line"
	done
}

# disk_name prints the block device the guest reads its marker from, or "none".
disk_name() {
	if [ -b "$STAGEHAND_DISK" ]; then echo "${STAGEHAND_DISK##*/}"; else echo none; fi
}

# marker_sector prints the 512-byte sector where the marker block starts.
marker_sector() {
	[ -b "$STAGEHAND_DISK" ] || return 1
	local sectors
	read -r sectors 2>/dev/null <"/sys/block/${STAGEHAND_DISK##*/}/size" || return 1
	# Smaller than 2 MiB: no room for the block; refuse rather than read sector 0.
	[ "${sectors:-0}" -ge 4096 ] || return 1
	echo $((sectors - 2048))
}

# read_marker_block prints the marker block's text, NULs removed. O_DIRECT so
# the answer is what is on the disk now, not a cached copy.
read_marker_block() {
	local sectors s
	# marker_sector, inline: every fork costs under TCG.
	[ -b "$STAGEHAND_DISK" ] || return 1
	read -r sectors 2>/dev/null <"/sys/block/${STAGEHAND_DISK##*/}/size" || return 1
	[ "${sectors:-0}" -ge 4096 ] || return 1
	s=$((sectors - 2048))
	{
		dd if="$STAGEHAND_DISK" bs=512 skip="$s" count=8 iflag=direct 2>/dev/null ||
			dd if="$STAGEHAND_DISK" bs=512 skip="$s" count=8 2>/dev/null
	} | tr -d '\000'
}

# marker_value KEY prints the first KEY=... value of the marker block (the
# lines are matched by the shell, not sed and head: two execs less).
marker_value() {
	local blk line
	blk=$(read_marker_block) || return 0
	while IFS= read -r line; do
		case "$line" in "$1"=*)
			echo "${line#*=}"
			return 0
			;;
		esac
	done <<EOF
$blk
EOF
}

# write_marker_block MARKER [HOSTNAME] replaces the whole block and syncs.
write_marker_block() {
	local s tmp=/tmp/marker-block.$$
	s=$(marker_sector) || return 1
	{
		printf 'MARKER=%s\n' "$1"
		[ -n "$2" ] && printf 'HOSTNAME=%s\n' "$2"
		dd if=/dev/zero bs=4096 count=1 2>/dev/null
	} | dd of="$tmp" bs=4096 count=1 iflag=fullblock 2>/dev/null
	if ! dd if="$tmp" of="$STAGEHAND_DISK" bs=512 seek="$s" count=8 conv=notrunc oflag=direct 2>/dev/null; then
		dd if="$tmp" of="$STAGEHAND_DISK" bs=512 seek="$s" count=8 conv=notrunc,fsync 2>/dev/null || {
			rm -f "$tmp"
			return 1
		}
	fi
	rm -f "$tmp"
	sync
}

# iface_ipv4 IFACE prints the first IPv4 address of IFACE, if any.
iface_ipv4() {
	local out
	out=$(ip -o -4 addr show dev "$1" 2>/dev/null) || return 0
	# One line an address: "N: IFACE inet A.B.C.D/LEN ..."; the first wins.
	set -- $out
	while [ $# -gt 1 ]; do
		if [ "$1" = inet ]; then
			echo "${2%%/*}"
			return 0
		fi
		shift
	done
}

# eth_ifaces prints the ethN interfaces in numeric order (each glob is
# sorted, one digit before two: no sort to exec).
eth_ifaces() {
	local d
	for d in /sys/class/net/eth[0-9] /sys/class/net/eth[0-9][0-9]; do
		[ -e "$d" ] && echo "${d##*/}"
	done
}

# find_seed prints the first virtio disk holding a cloud-init NoCloud seed:
# an ISO 9660 volume labelled cidata (any case), as internal/seed writes. It
# reads two short fields of the volume descriptor at 32 KiB (no module, no
# mount), so a guest without a seed pays one dd per disk.
find_seed() {
	local d dev i label
	for d in /sys/block/vd*; do
		[ -e "$d" ] || continue
		dev=/dev/${d##*/}
		i=0
		while [ ! -b "$dev" ] && [ $i -lt 50 ]; do usleep 20000; i=$((i + 1)); done
		[ "$(dd if="$dev" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ] || continue
		label=$(dd if="$dev" bs=1 skip=32808 count=7 2>/dev/null)
		case "$label" in cidata" " | CIDATA" ") ;; *) continue ;; esac
		echo "$dev"
		return 0
	done
	return 1
}

# seed_value FILE KEY prints KEY's value from a "key: value" line of FILE
# (meta-data is YAML; quotes are dropped), kept to [0-9A-Za-z._-].
seed_value() {
	sed -n "s/^$2:[[:space:]]*//p" "$1" 2>/dev/null | head -n 1 | tr -cd '0-9A-Za-z._-' | head -c 128
}

# cmdline_value KEY prints the value of KEY=... on the kernel command line.
cmdline_value() {
	local w
	for w in $(cat /proc/cmdline); do
		case "$w" in "$1"=*) echo "${w#*=}"; return 0 ;; esac
	done
	return 1
}

# cmdline_has WORD succeeds when WORD (or WORD=...) is on the kernel command line.
cmdline_has() {
	local w
	for w in $(cat /proc/cmdline); do
		case "$w" in "$1" | "$1"=*) return 0 ;; esac
	done
	return 1
}
