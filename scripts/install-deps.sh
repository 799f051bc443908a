#!/usr/bin/env bash
# Installs, with apt-get, the Debian packages Stagehand needs at run time and
# for its tests, skipping those already present. Needs root (or sudo).
set -euo pipefail

# package:command-that-proves-it-is-installed
want=(
  qemu-utils:qemu-img
  qemu-system-x86:qemu-system-x86_64
  nftables:nft
  iproute2:ip
  busybox-static:/bin/busybox
  cpio:cpio
  curl:curl
  # man(1) renders the generated manual pages in cmd/stagehand's test;
  # dpkg-deb builds the Debian package (scripts/build-deb.sh).
  man-db:man
  dpkg:dpkg-deb
  # The web console's tests drive Debian's Chromium headless (chromedp talks
  # to it over a pipe: no chromedriver); a font so pages render text.
  chromium:/usr/bin/chromium
  fonts-dejavu-core:/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
  # The PostgreSQL server the store/postgres tests start in a temporary
  # directory (internal/store/postgres/pgtest); whichever version Debian ships.
  postgresql:/usr/lib/postgresql/*/bin/initdb
)
missing=()
for pair in "${want[@]}"; do
  pkg=${pair%%:*} cmd=${pair#*:}
  if [[ $cmd == /* ]]; then compgen -G "$cmd" >/dev/null || missing+=("$pkg")
  else command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg"); fi
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  # The tests start their own PostgreSQL: the package must not make and
  # start a cluster of its own on port 5432.
  if [[ " ${missing[*]} " == *" postgresql "* && ! -e /etc/postgresql-common/createcluster.conf ]]; then
    $sudo mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  echo "install-deps: add /usr/local/go/bin to PATH" >&2
fi
