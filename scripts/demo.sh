#!/usr/bin/env bash
# Sets everything up on a fresh Debian machine and runs the main job on the
# embedded default store: installs the Debian packages Stagehand needs,
# builds the binary, starts the daemon on 127.0.0.1 with a SQLite store in
# a data directory, and walks through templates, networks, configurations,
# linked and full clones, chains, pool usage and the doctor.
#
#   DATA=DIR   data directory (default: ./.data/demo, wiped first)
#   KEEP=1     leave the daemon running at the end
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
scripts/install-deps.sh
mkdir -p bin
go build -o bin/stagehand ./cmd/stagehand
sh=bin/stagehand

DATA=${DATA:-$PWD/.data/demo}
rm -rf "$DATA"; mkdir -p "$DATA"
listen=127.0.0.1:${PORT:-7480}
export STAGEHAND_SERVER=http://$listen
$sh serve --data-dir "$DATA" --listen "$listen" >"$DATA/daemon.log" 2>&1 &
daemon=$!
stop() { [[ ${KEEP:-0} == 1 ]] || { kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; }; }
trap stop EXIT
for _ in $(seq 100); do curl -fsS "$STAGEHAND_SERVER/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

step() { printf '\n\033[1m$ stagehand %s\033[0m\n' "$*"; $sh "$@"; }

# A small template disk with known data in its first MiB.
img=$DATA/demo-disk.qcow2
qemu-img create -q -f qcow2 "$img" 1G
qemu-io -f qcow2 -c "write -P 0xaa 0 1M" "$img" >/dev/null

step template import linux --disk "$img" --cpus 1 --memory 256
step network create lan --subnet 10.50.0.0/24 --pool 10.50.0.10-10.50.0.99
step config create web --vm app=linux,net=lan --vm db=linux,net=lan,ip=10.50.0.5
qemu-io -f qcow2 -c "write -P 0xbb 1M 1M" "$($sh config show web -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["vms"][0]["disks"][0]["path"])')" >/dev/null
step config clone web web-copy --mode linked
step config clone web web-full --mode full
step config list
step disk chain web-copy app
step network show lan
step config delete web
step network show lan
step doctor
echo
echo "demo done: data in $DATA, daemon log in $DATA/daemon.log"
