#!/usr/bin/env bash
# Boots the test guest under QEMU (TCG) and checks what it answers:
#
#   1. direct kernel boot (-kernel/-initrd) with a data disk and two NICs;
#      fields of GET /, /ping, /fetch, /write, ACPI powerdown over QMP, and
#      that the write reached the overlay but not data.qcow2;
#   2. disk boot through SeaBIOS of disk.qcow2 on virtio-blk, hostname and
#      marker set from the host with scripts/guest-marker.sh;
#   3. disk boot with a plain `-drive file=` (AHCI): boots, answers, no disk;
#   4. direct kernel boot with a cloud-init NoCloud seed made by genisoimage
#      (the reference tool: Rock Ridge + Joliet) as a second virtio disk:
#      hostname and instance-id from the seed, the seed's hostname winning
#      over the marker's.
#
# Usage: scripts/check-test-guest.sh [OUTDIR]   (default testdata/guest/out)
#
# Networking is QEMU user mode with restrict=on (nothing leaves QEMU); the
# only host port is a hostfwd on 127.0.0.1, and the guest talks only to
# itself and QEMU's DHCP server. Every QEMU started here is killed on exit;
# writes go to throwaway overlays. Prints "N passed, N failed" and exits
# non-zero on any failure. BOOT_TIMEOUT bounds each boot (seconds, default
# 120: a loaded 2-core machine has taken 42 s).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/testdata/guest/out}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-120} # seconds from QEMU start to first HTTP answer

"$ROOT/scripts/build-test-guest.sh" "$OUT"
OUT=$(cd "$OUT" && pwd)
CMDLINE=$(cat "$OUT/cmdline")

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0 failed=0
say() { echo "check-test-guest: $*"; }
pass() {
	passed=$((passed + 1))
	say "ok   $*"
}
fail() {
	failed=$((failed + 1))
	say "FAIL $*"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# free_port prints a TCP port nobody listens on at 127.0.0.1.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		ss -Hltn "sport = :$p" | grep -q . || {
			echo "$p"
			return
		}
	done
}

# start_vm NAME QEMU-ARGS...: QEMU with the serial console in
# $TMP/NAME.serial, QMP on the pipes $TMP/NAME.qmp.{in,out}, and guest port 80
# forwarded from 127.0.0.1:$PORT on the first NIC (netdev n0). Sets PORT,
# START (ms) and PID_NAME. Another process may take the free port before QEMU
# binds it: then QEMU exits at once and this tries again with another port.
start_vm() {
	local name=$1 attempt pid fd
	shift
	for attempt in 1 2 3 4 5; do
		rm -f "$TMP/$name".{qmp.in,qmp.out,qmp.log,serial,stderr}
		mkfifo "$TMP/$name.qmp.in" "$TMP/$name.qmp.out"
		PORT=$(free_port)
		START=$(now_ms)
		qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nodefaults -no-reboot \
			-display none -serial "file:$TMP/$name.serial" \
			-chardev "pipe,id=qmp,path=$TMP/$name.qmp" -mon chardev=qmp,mode=control \
			-netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$PORT-:80" \
			-device virtio-net-pci,netdev=n0,romfile= \
			"$@" 2>"$TMP/$name.stderr" &
		pid=$!
		PIDS+=("$pid")
		eval "PID_$name=$pid"
		# Drain QMP output so QEMU never blocks on a full pipe.
		cat "$TMP/$name.qmp.out" >"$TMP/$name.qmp.log" &
		PIDS+=($!)
		# Read-write open: never blocks, even if QEMU has not opened its end.
		exec {fd}<>"$TMP/$name.qmp.in"
		eval "QMP_$name=$fd"
		echo '{"execute":"qmp_capabilities"}' >&"$fd"
		# The QMP greeting comes after the netdevs (and their hostfwd) are up.
		while kill -0 "$pid" 2>/dev/null && ! grep -q '"QMP"' "$TMP/$name.qmp.log"; do
			sleep 0.05
		done
		kill -0 "$pid" 2>/dev/null && return 0
		exec {fd}>&-
		grep -q 'forwarding' "$TMP/$name.stderr" || break
		say "     port $PORT taken, retrying"
	done
	say "QEMU for $name failed to start:"
	sed 's/^/    /' "$TMP/$name.stderr" >&2
	return 1
}

# qmp NAME JSON sends one QMP command.
qmp() {
	local fd
	eval "fd=\$QMP_$1"
	echo "$2" >&"$fd"
}

# wait_http NAME: wait for "STAGEHAND-IP eth0" on the serial console, then
# for GET / to answer on $PORT. Sets IP_MS and HTTP_MS (ms since START).
# Gives up early if the VM's QEMU exits. Waiting for the console line first
# matters: a connection made through hostfwd before the guest has an address
# stalls in QEMU's slirp until its SYN retransmit, about a second.
wait_http() {
	local pid deadline=$(($(now_ms) + BOOT_TIMEOUT * 1000))
	eval "pid=\$PID_$1"
	IP_MS= HTTP_MS=
	while [ "$(now_ms)" -lt $deadline ] && kill -0 "$pid" 2>/dev/null; do
		if grep -q "STAGEHAND-IP eth0" "$TMP/$1.serial" 2>/dev/null; then
			IP_MS=$(($(now_ms) - START))
			break
		fi
		sleep 0.05
	done
	[ -n "$IP_MS" ] || return 1
	while [ "$(now_ms)" -lt $deadline ] && kill -0 "$pid" 2>/dev/null; do
		if curl -sf --max-time 5 "http://127.0.0.1:$PORT/" >"$TMP/last" 2>/dev/null; then
			HTTP_MS=$(($(now_ms) - START))
			return 0
		fi
		sleep 0.1
	done
	return 1
}

get() { curl -sf --max-time 15 "http://127.0.0.1:$1$2"; }
field() { sed -n "s/^$2=//p" <<<"$1" | head -n 1; }

# expect DESC GOT WANT
expect() {
	if [ "$2" = "$3" ]; then pass "$1 = $3"; else fail "$1: got '$2', want '$3'"; fi
}

# wait_exit NAME SECONDS: wait for the VM's QEMU to exit; prints ms taken.
wait_exit() {
	local pid t0
	eval "pid=\$PID_$1"
	t0=$(now_ms)
	while kill -0 "$pid" 2>/dev/null; do
		[ $(($(now_ms) - t0)) -lt $(($2 * 1000)) ] || return 1
		sleep 0.1
	done
	echo $(($(now_ms) - t0))
}

dump() {
	say "--- $1 serial console:"
	sed 's/^/    /' "$TMP/$1.serial" 2>/dev/null || true
	say "--- $1 qemu stderr:"
	sed 's/^/    /' "$TMP/$1.stderr" 2>/dev/null || true
}

# --- 1. direct kernel boot ---------------------------------------------------
say "1. direct kernel boot: -kernel vmlinuz -initrd initrd.img, data disk, 2 NICs"
qemu-img create -q -f qcow2 -b "$OUT/data.qcow2" -F qcow2 "$TMP/k.qcow2"
if start_vm k -kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img" \
	-append "$CMDLINE stagehand.hostname=t1" \
	-drive "file=$TMP/k.qcow2,if=virtio" \
	-netdev user,id=n1,restrict=on,net=10.0.3.0/24 -device virtio-net-pci,netdev=n1,romfile= &&
	wait_http k; then
	pass "kernel boot: STAGEHAND-IP after $IP_MS ms, first HTTP answer after $HTTP_MS ms"
	body=$(cat "$TMP/last")
	expect "hostname" "$(field "$body" hostname)" t1
	expect "marker" "$(field "$body" marker)" data-initial
	expect "disk" "$(field "$body" disk)" vda
	expect "ip.eth0" "$(field "$body" ip.eth0)" 10.0.2.15
	# eth1's lease may come a moment after eth0's.
	for _ in $(seq 50); do
		body=$(get "$PORT" /) || true
		[ -n "$(field "$body" ip.eth1)" ] && break
		sleep 0.1
	done
	expect "ip.eth1" "$(field "$body" ip.eth1)" 10.0.3.15
	expect "ip" "$(field "$body" ip)" "10.0.2.15 10.0.3.15"
	expect "instance-id (no seed)" "$(field "$body" instance-id)" ""
	expect "/identity seed" "$(field "$(get "$PORT" /identity)" seed)" none
	c1=$(field "$body" counter)
	up=$(field "$body" uptime)
	[[ "$up" =~ ^[0-9]+\.[0-9]+$ ]] && pass "uptime = $up" || fail "uptime: '$up'"
	[[ "$(field "$body" boot)" =~ ^[0-9a-f-]{36}$ ]] && pass "boot id" || fail "boot id: '$(field "$body" boot)'"
	sleep 2.5
	c2=$(field "$(get "$PORT" /)" counter)
	if [ "${c1:-0}" -gt 0 ] && [ "${c2:-0}" -ge $((c1 + 2)) ]; then
		pass "counter runs ($c1 -> $c2 in ~2.5 s)"
	else
		fail "counter: $c1 -> $c2 in ~2.5 s"
	fi
	expect "ping self" "$(field "$(get "$PORT" '/ping?host=10.0.2.15')" ping)" ok
	expect "ping bad host" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/ping?host=-f")" 400
	f=$(get "$PORT" '/fetch?url=http://127.0.0.1/') || true
	expect "fetch self" "$(field "$f" fetch)" ok
	expect "fetch body hostname" "$(field "$f" hostname)" t1
	expect "fetch refused port" "$(field "$(get "$PORT" '/fetch?url=http://127.0.0.1:9/')" fetch)" fail
	w=$(get "$PORT" '/write?marker=kernel%20wrote') || true
	expect "write" "$(field "$w" write)" ok
	expect "marker after write" "$(field "$(get "$PORT" /)" marker)" "kernel wrote"
	expect "unknown path" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/nope")" 404

	qmp k '{"execute":"system_powerdown"}'
	if ms=$(wait_exit k 30); then
		pass "ACPI powerdown: QEMU exited $ms ms after system_powerdown"
		expect "marker on overlay (host)" "$(sed -n 's/^MARKER=//p' < <("$ROOT/scripts/guest-marker.sh" read "$TMP/k.qcow2"))" "kernel wrote"
	else
		fail "ACPI powerdown: QEMU still running 30 s after system_powerdown"
	fi
	expect "marker on data.qcow2 (untouched)" "$(sed -n 's/^MARKER=//p' < <("$ROOT/scripts/guest-marker.sh" read "$OUT/data.qcow2"))" data-initial
else
	fail "kernel boot: no HTTP answer within $BOOT_TIMEOUT s"
	dump k
fi

# --- 2. disk boot, virtio-blk --------------------------------------------------
say "2. disk boot through SeaBIOS: disk.qcow2 on virtio-blk"
qemu-img create -q -f qcow2 -b "$OUT/disk.qcow2" -F qcow2 "$TMP/d.qcow2"
"$ROOT/scripts/guest-marker.sh" write "$TMP/d.qcow2" "set from host" d1
if start_vm d -drive "file=$TMP/d.qcow2,if=virtio" && wait_http d; then
	pass "disk boot (virtio): STAGEHAND-IP after $IP_MS ms, first HTTP answer after $HTTP_MS ms"
	body=$(cat "$TMP/last")
	expect "hostname (from disk)" "$(field "$body" hostname)" d1
	expect "marker" "$(field "$body" marker)" "set from host"
	expect "ip" "$(field "$body" ip)" 10.0.2.15
	w=$(get "$PORT" '/write?marker=disk%20wrote') || true
	expect "write" "$(field "$w" write)" ok
	qmp d '{"execute":"system_powerdown"}'
	if ms=$(wait_exit d 30); then
		pass "ACPI powerdown: QEMU exited $ms ms after system_powerdown"
		blk=$("$ROOT/scripts/guest-marker.sh" read "$TMP/d.qcow2")
		expect "marker on overlay (host)" "$(sed -n 's/^MARKER=//p' <<<"$blk")" "disk wrote"
		expect "hostname kept by /write" "$(sed -n 's/^HOSTNAME=//p' <<<"$blk")" d1
	else
		fail "ACPI powerdown: QEMU still running 30 s after system_powerdown"
	fi
else
	fail "disk boot (virtio): no HTTP answer within $BOOT_TIMEOUT s"
	dump d
fi

# --- 3. disk boot, plain -drive ----------------------------------------------
say "3. disk boot through SeaBIOS: plain -drive file=disk.qcow2 (AHCI)"
qemu-img create -q -f qcow2 -b "$OUT/disk.qcow2" -F qcow2 "$TMP/p.qcow2"
if start_vm p -drive "file=$TMP/p.qcow2" && wait_http p; then
	pass "disk boot (plain): STAGEHAND-IP after $IP_MS ms, first HTTP answer after $HTTP_MS ms"
	body=$(cat "$TMP/last")
	expect "hostname" "$(field "$body" hostname)" guest
	expect "disk (AHCI not carried)" "$(field "$body" disk)" none
	expect "marker" "$(field "$body" marker)" ""
	expect "write without disk" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/write?marker=x")" 500
else
	fail "disk boot (plain): no HTTP answer within $BOOT_TIMEOUT s"
	dump p
fi

# --- 4. cloud-init seed ---------------------------------------------------------
say "4. direct kernel boot with a NoCloud seed (genisoimage, label cidata) on vdb"
qemu-img create -q -f qcow2 -b "$OUT/data.qcow2" -F qcow2 "$TMP/s.qcow2"
"$ROOT/scripts/guest-marker.sh" write "$TMP/s.qcow2" seeded from-marker
mkdir "$TMP/seed"
iid=i-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
printf 'instance-id: %s\nlocal-hostname: seeded-1\n' "$iid" >"$TMP/seed/meta-data"
printf '#cloud-config\nhostname: seeded-1\n' >"$TMP/seed/user-data"
genisoimage -quiet -output "$TMP/seed.iso" -volid cidata -joliet -rock "$TMP/seed/meta-data" "$TMP/seed/user-data"
if start_vm s -kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img" -append "$CMDLINE" \
	-drive "file=$TMP/s.qcow2,if=virtio" -drive "file=$TMP/seed.iso,if=virtio,format=raw,readonly=on" &&
	wait_http s; then
	pass "seed boot: STAGEHAND-IP after $IP_MS ms, first HTTP answer after $HTTP_MS ms"
	body=$(get "$PORT" /identity) || true
	expect "hostname (seed over marker)" "$(field "$body" hostname)" seeded-1
	expect "instance-id" "$(field "$body" instance-id)" "$iid"
	expect "seed" "$(field "$body" seed)" vdb
	body=$(cat "$TMP/last")
	expect "GET / instance-id" "$(field "$body" instance-id)" "$iid"
	expect "marker disk still vda" "$(field "$body" disk) $(field "$body" marker)" "vda seeded"
else
	fail "seed boot: no HTTP answer within $BOOT_TIMEOUT s"
	dump s
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
