#!/usr/bin/env bash
# Sets everything up on a fresh Debian machine and runs the main job on the
# embedded default store: installs the Debian packages Stagehand needs,
# builds the binary and the tiny test guest, starts the daemon with a SQLite
# store in a data directory, and walks through templates, networks,
# configurations, linked and full clones, chains, pool usage, real QEMU
# guests on a bridge with DHCP reservations, the duplicate-address refusal,
# a fenced clone running beside its original, and the doctor.
#
# The daemon, its bridges, taps and guests run in a network namespace of
# their own (stagehand-demo), so the demo leaves the host's network alone.
#
#   DATA=DIR      data directory (default: ./.data/demo, wiped first)
#   KEEP=1        leave the daemon and the namespace at the end
#   READY_WAIT=S  how long to wait for the daemon to be ready (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (bridges, taps, namespaces)" >&2; exit 1; }
scripts/install-deps.sh
scripts/build-web.sh # the web console's JavaScript, embedded by the Go build
mkdir -p bin
# The version `stagehand status` shows: the commit (builds may run with -buildvcs=false).
version=$(git describe --always --dirty 2>/dev/null || echo dev)
go build -ldflags "-X stagehand/internal/cli.version=$version" -o bin/stagehand ./cmd/stagehand
scripts/build-test-guest.sh >/dev/null
guest=$PWD/testdata/guest/out
sh=$PWD/bin/stagehand

DATA=${DATA:-$PWD/.data/demo}
ns=stagehand-demo
client=stagehand-demo-client
cleanup() {
  [[ ${KEEP:-0} == 1 ]] && { echo "daemon left running in namespace $ns (ip netns exec $ns $sh ...)"; return; }
  ip netns exec $ns "$sh" config undeploy web-fenced >/dev/null 2>&1 || true
  ip netns exec $ns "$sh" config undeploy web >/dev/null 2>&1 || true
  for p in $(ip netns pids $ns 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  ip netns del $ns 2>/dev/null || true
  ip netns del $client 2>/dev/null || true
}
ip netns del $ns 2>/dev/null || true
ip netns del $client 2>/dev/null || true
rm -rf "$DATA"; mkdir -p "$DATA"
ip netns add $ns
ip -n $ns link set lo up
trap cleanup EXIT
in_ns() { ip netns exec $ns "$@"; }

# The CLI talks to the daemon over its unix socket: as root there, it is
# the system administrator, with no token to pass around.
sock=$DATA/stagehand.sock
export STAGEHAND_SERVER=unix://$sock
in_ns "$sh" serve --data-dir "$DATA" >"$DATA/daemon.log" 2>&1 &
daemon=$!
# The daemon answers at once and accepts writes once it has recovered what
# a previous run left half done (GET /readyz); the accelerator probe goes
# on in the background (deploys wait for it). The wait is bounded, and a
# failure shows the daemon's own words.
daemon_failed() {
  echo "demo: $1; last lines of $DATA/daemon.log:" >&2
  tail -n 30 "$DATA/daemon.log" >&2
  exit 1
}
ready_wait=${READY_WAIT:-30}
deadline=$((SECONDS + ready_wait))
until in_ns curl -fsS --max-time 2 --unix-socket "$sock" http://localhost/readyz >/dev/null 2>&1; do
  kill -0 "$daemon" 2>/dev/null || daemon_failed "the daemon exited before it was ready"
  ((SECONDS < deadline)) || daemon_failed "the daemon at $STAGEHAND_SERVER was not ready within ${ready_wait}s"
  sleep 0.1
done

step() { printf '\n\033[1m$ stagehand %s\033[0m\n' "$*"; in_ns "$sh" "$@"; }
step status
# Guests are reached from a client namespace on the network, like any host.
guest_get() { ip netns exec $client curl -fsS --max-time 3 "http://$1$2"; }
wait_guest() { for _ in $(seq 300); do guest_get "$1" / >/dev/null 2>&1 && return 0; sleep 0.3; done; echo "guest $1 did not answer" >&2; return 1; }
nic_ip() { in_ns "$sh" config show "$1" -o json | python3 -c "import json,sys; print(json.load(sys.stdin)['vms'][$2]['nics'][0]['$3'])"; }

step template import tiny --disk "$guest/data.qcow2" --memory 256 \
  --kernel "$guest/vmlinuz" --initrd "$guest/initrd.img" --cmdline "$(cat "$guest/cmdline")"
step network create lan --subnet 10.50.0.0/24 --pool 10.50.0.10-10.50.0.99
step config create web --vm app=tiny,net=lan --vm db=tiny,net=lan,ip=10.50.0.5
step config deploy web
app=$(nic_ip web 0 ip)
bridge=$(in_ns ip -o link show type bridge | awk -F': ' 'NR==1{print $2}')
ip netns add $client
ip link add demo0 netns $client type veth peer name demo-br netns $ns
ip -n $ns link set demo-br master "$bridge" up
ip -n $client addr add 10.50.0.250/24 dev demo0
ip -n $client link set demo0 up
ip -n $client link set lo up
wait_guest "$app"; wait_guest 10.50.0.5
printf '\n# the guests got their reserved addresses by DHCP and answer:\n'
guest_get "$app" / | grep -E '^(hostname|ip|marker)='
guest_get "$app" "/write?marker=written-before-the-clone" >/dev/null
step config undeploy web
step config clone web web-linked --mode linked
step config clone web web-full --mode full
step disk chain web-linked app
step config deploy web
printf '\n# the clone has the same addresses: an unfenced deploy beside the original is refused\n'
step config deploy web-linked || true
step config clone web-linked web-fenced
step config deploy web-fenced --fenced
ext=$(nic_ip web-fenced 0 external_ip)
printf '\n# the fenced clone answers on its external address %s; inside, it keeps %s\n' "$ext" "$app"
wait_guest "$ext"
guest_get "$ext" / | grep -E '^(ip|marker)='
step config list
step network show lan
step config undeploy web-fenced
step config undeploy web
step config delete web
step network show lan
step doctor
step status
echo
echo "demo done: data in $DATA, daemon log in $DATA/daemon.log"
