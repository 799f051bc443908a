#!/usr/bin/env bash
# Many hosts on one machine (issue 13): N daemons (default 3), each in a
# network namespace of its own, joined by an underlay bridge, sharing one
# PostgreSQL started here from Debian's postgresql package in a temporary
# directory. Shows placement by memory and chain locality (`--explain`), a
# linked clone deployed on a host that pulls only the frozen layers it
# lacks, API forwarding (any host answers for any configuration), a fenced
# configuration spread over two hosts (VXLAN), and `host drain` moving a
# running guest with its memory state.
#
# Everything lives in namespaces this script makes (stagehand-ul,
# stagehand-h1..N) and is removed at the end.
#
#   HOSTS=N   how many hosts (2 to 9; default 3)
#   DATA=DIR  data directories (default: ./.data/demo-hosts, wiped first)
#   KEEP=1    leave daemons, PostgreSQL and namespaces at the end
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
[[ $(id -u) -eq 0 ]] || { echo "demo-hosts: run as root (namespaces, bridges, taps)" >&2; exit 1; }
HOSTS=${HOSTS:-3}
[[ $HOSTS =~ ^[2-9]$ ]] || { echo "demo-hosts: HOSTS=$HOSTS: want 2 to 9" >&2; exit 1; }
scripts/install-deps.sh
scripts/build-web.sh
mkdir -p bin
version=$(git describe --always --dirty 2>/dev/null || echo dev)
go build -ldflags "-X stagehand/internal/cli.version=$version" -o bin/stagehand ./cmd/stagehand
scripts/build-test-guest.sh >/dev/null
guest=$PWD/testdata/guest/out
sh=$PWD/bin/stagehand

DATA=${DATA:-$PWD/.data/demo-hosts}
ul=stagehand-ul
net=10.89.0 # the underlay: PostgreSQL at .1, host i at .1i
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pgdir=$(mktemp -d /tmp/stagehand-demo-pg.XXXXXX) # the postgres user must reach it
daemons=()
cleanup() {
  if [[ ${KEEP:-0} == 1 ]]; then
    echo "left running: namespaces $ul and stagehand-h1..$HOSTS, PostgreSQL in $pgdir"
    return
  fi
  for i in $(seq "$HOSTS"); do
    for c in $(STAGEHAND_SERVER=unix://$DATA/h$i/stagehand.sock "$sh" config list -o json 2>/dev/null |
      python3 -c 'import json,sys; [print(c["name"]) for c in json.load(sys.stdin) if c.get("state")=="deployed"]' 2>/dev/null); do
      STAGEHAND_SERVER=unix://$DATA/h$i/stagehand.sock timeout 60 "$sh" config undeploy "$c" >/dev/null 2>&1 || true
    done
  done
  for p in "${daemons[@]}"; do kill "$p" 2>/dev/null || true; done
  for i in $(seq "$HOSTS"); do
    for p in $(ip netns pids "stagehand-h$i" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  done
  for p in $(ip netns pids $ul 2>/dev/null); do kill -QUIT "$p" 2>/dev/null || true; done
  sleep 1
  for i in $(seq "$HOSTS"); do ip netns del "stagehand-h$i" 2>/dev/null || true; done
  ip netns del $ul 2>/dev/null || true
  rm -rf "$pgdir"
}
trap cleanup EXIT
for n in $ul $(seq -f 'stagehand-h%g' "$HOSTS"); do ip netns del "$n" 2>/dev/null || true; done
rm -rf "$DATA"; mkdir -p "$DATA"

# The underlay: a bridge in a namespace of its own, PostgreSQL listening on it.
ip netns add $ul
ip -n $ul link set lo up
ip -n $ul link add ul0 type bridge
ip -n $ul addr add $net.1/24 dev ul0
ip -n $ul link set ul0 up
chown postgres "$pgdir"
runuser -u postgres -- "$pgbin/initdb" -D "$pgdir/data" -U postgres -A trust >"$pgdir/initdb.log"
echo "host all all $net.0/24 trust" >>"$pgdir/data/pg_hba.conf"
ip netns exec $ul runuser -u postgres -- "$pgbin/postgres" -D "$pgdir/data" -k "$pgdir" \
  -c listen_addresses=$net.1 >"$pgdir/server.log" 2>&1 &
for _ in $(seq 100); do "$pgbin/pg_isready" -q -h "$pgdir" && break; sleep 0.1; done
"$pgbin/psql" -q -h "$pgdir" -U postgres -c "CREATE DATABASE stagehand" >/dev/null
store="postgres://postgres@$net.1:5432/stagehand?sslmode=disable"

# The hosts: one namespace each, a veth onto the underlay, one daemon.
for i in $(seq "$HOSTS"); do
  ns=stagehand-h$i
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add underlay netns "$ns" type veth peer name "vh$i" netns $ul
  ip -n $ul link set "vh$i" master ul0 up
  ip -n "$ns" addr add "$net.1$i/24" dev underlay
  ip -n "$ns" link set underlay up
  mkdir -p "$DATA/h$i"
  ip netns exec "$ns" "$sh" serve --data-dir "$DATA/h$i" --store "$store" --host-name "h$i" \
    --listen "$net.1$i:8443" --advertise "https://$net.1$i:8443" --guest-memory 300 >"$DATA/h$i/daemon.log" 2>&1 &
  daemons+=($!)
done
for i in $(seq "$HOSTS"); do
  deadline=$((SECONDS + 60))
  until curl -fsS --max-time 2 --unix-socket "$DATA/h$i/stagehand.sock" http://localhost/readyz >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      echo "demo-hosts: host h$i was not ready within 60 s; its log:" >&2
      tail -n 30 "$DATA/h$i/daemon.log" >&2
      exit 1
    fi
    sleep 0.2
  done
done

# The CLI of host i: root on its unix socket is the system administrator.
on() {
  local i=$1
  shift
  printf '\n\033[1m[h%s] $ stagehand %s\033[0m\n' "$i" "$*"
  STAGEHAND_SERVER=unix://$DATA/h$i/stagehand.sock "$sh" "$@"
}
quiet() { local i=$1; shift; STAGEHAND_SERVER=unix://$DATA/h$i/stagehand.sock "$sh" "$@"; }
field() { quiet "$1" config show "$2" -o json | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$3"; }
guest_get() { ip netns exec "stagehand-h$1" curl -fsS --max-time 3 "http://$2$3"; }
wait_guest() { for _ in $(seq 300); do guest_get "$1" "$2" / >/dev/null 2>&1 && return 0; sleep 0.3; done; echo "guest $2 on h$1 did not answer" >&2; return 1; }
home() { field "$1" "$2" "['host']"; }

on 1 host list
# A BIOS-booted template: its disk is its whole state, so it can live on any host.
on 1 template import tiny --disk "$guest/disk.qcow2" --memory 256
on 1 network create lan --subnet 10.50.0.0/24 --pool 10.50.0.10-10.50.0.99
printf '\n# placement: each host offers 300 MiB to guests (serve --guest-memory): one 256 MiB guest each\n'
on 1 config create small --vm app=tiny,net=lan
on 1 config create small-2 --vm app=tiny,net=lan
on 1 config clone small far # a linked clone, for later
on 1 config change-ips far  # a clone keeps its source's addresses; this one runs beside it
on 2 config deploy small --explain
printf '\n# h1 is full: small-2 moves to the host placement chooses (its tops and the layers it lacks)\n'
on 3 config deploy small-2 --explain
printf '\n# the linked clone deployed on the host asked for: it pulls only what it lacks, by hash\n'
on 1 config deploy far --host "h$HOSTS" --explain
h=$(home 1 far | tr -d h)
ip=$(field 1 far "['vms'][0]['nics'][0]['ip']")
wait_guest "$h" "$ip"
guest_get "$h" "$ip" / | grep -E '^(hostname|ip|marker|uptime)='
printf '\n# any host answers for any configuration: h1 forwards to the home host h%s\n' "$h"
on 1 vm log far app | tail -n 3
on 1 config list
printf '\n# drain h%s: what runs there moves away with its memory (save-state, move, resume)\n' "$h"
on 1 config undeploy small
guest_get "$h" "$ip" "/write?marker=written-before-the-drain" >/dev/null
on 1 host drain "h$h" --wait
h2=$(home 1 far | tr -d h)
wait_guest "$h2" "$ip"
guest_get "$h2" "$ip" / | grep -E '^(ip|marker|uptime)='
on 1 host list
on 1 host undrain "h$h"
for c in $(quiet 1 config list -o json | python3 -c 'import json,sys; [print(c["name"]) for c in json.load(sys.stdin) if c.get("state")=="deployed"]'); do
  on 1 config undeploy "$c"
done
printf '\n# a fenced configuration spread over hosts (one guest fits per host): one VXLAN per network\n'
on 1 config create wide --vm a=tiny,net=lan --vm b=tiny,net=lan
on 1 config deploy wide --fenced --spread --explain
on 1 config show wide
on 1 config undeploy wide
on 1 doctor
on 1 host list
echo
echo "demo-hosts done: data in $DATA, each host's log in $DATA/hI/daemon.log"
