#!/usr/bin/env bash
# Builds the Debian package of Stagehand from this checkout, with dpkg-deb
# from a staged tree (no debhelper, no nfpm):
#
#   /usr/bin/stagehand                          the binary (static, version from git describe)
#   /lib/systemd/system/stagehand.service       the daemon's unit (packaging/stagehand.service)
#   /etc/default/stagehand                      its options (a conffile)
#   /usr/share/man/man1/stagehand*.1.gz         one page per command (stagehand man)
#   /usr/share/bash-completion/completions/stagehand
#   /usr/share/zsh/vendor-completions/_stagehand
#   /usr/share/fish/vendor_completions.d/stagehand.fish
#   /usr/share/doc/stagehand/README.md
#
# and the maintainer scripts of packaging/debian (the socket's group, the
# unit enabled and started where systemd runs; data kept on remove and
# purge). Depends: what the daemon runs (qemu-system-x86_64, qemu-img, ip
# for `ip netns exec`) and adduser (postinst). nftables is only Recommended:
# the daemon programs nftables through netlink, nft is for looking at it.
#
#   scripts/build-deb.sh [OUTDIR]   writes OUTDIR/stagehand_VERSION_ARCH.deb
#                                   (default bin/) and prints its path
#   DEB_COMPRESSION=gzip            faster to build than xz (the default),
#                                   a third larger
#   DEB_MAINTAINER="Name <addr>"    the control file's Maintainer
#
# Version: a tag vX.Y.Z on HEAD is X.Y.Z; commits after it (or no tag) add
# +gitYYYYMMDDHHMMSS.HASH (the commit's time, so versions sort), and a tree
# with changes adds .dirty. The files' dates are the commit's time
# (SOURCE_DATE_EPOCH), so that two builds of a commit are the same.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
out=${1:-bin}
mkdir -p "$out"
out=$(cd "$out" && pwd)

for tool in dpkg-deb go gzip; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool not found (scripts/install-deps.sh)" >&2; exit 1; }
done

describe=$(git describe --tags --always --dirty 2>/dev/null || echo unknown)
commit_time=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$commit_time}
upstream=0.0.0
if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
  upstream=${tag#v}
fi
if [[ $(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null || true) == "" ]]; then
  upstream+="+git$(date -u -d "@$commit_time" +%Y%m%d%H%M%S).$(git rev-parse --short HEAD 2>/dev/null || echo none)"
fi
if [[ $describe == *-dirty ]]; then upstream+=.dirty; fi
version="$upstream-1"
arch=$(dpkg --print-architecture)

stage=$(mktemp -d /tmp/stagehand-deb.XXXXXX)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/default" \
  "$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" \
  "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" \
  "$root/usr/share/doc/stagehand"

scripts/build-web.sh # the web console's JavaScript, embedded by the Go build
# Static (no cgo): the binary depends on no shared library, so the package
# needs no libc Depends; the daemon reads the socket's group from
# /etc/group, where addgroup --system puts it.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X stagehand/internal/cli.version=$describe" \
  -o "$root/usr/bin/stagehand" ./cmd/stagehand
bin=$root/usr/bin/stagehand

# The man pages and completions come from the binary just built, run with
# an environment of its own so the build host's settings do not leak in.
gen() { env -i PATH=/usr/bin:/bin SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" HOME="$stage" "$bin" "$@"; }
gen man "$stage/man"
for page in "$stage"/man/*.1; do
  gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
gen completion bash >"$root/usr/share/bash-completion/completions/stagehand"
gen completion zsh >"$root/usr/share/zsh/vendor-completions/_stagehand"
gen completion fish >"$root/usr/share/fish/vendor_completions.d/stagehand.fish"

install -m 0644 packaging/stagehand.service "$root/lib/systemd/system/stagehand.service"
install -m 0644 packaging/default/stagehand "$root/etc/default/stagehand"
install -m 0644 README.md "$root/usr/share/doc/stagehand/README.md"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
  -e "s/@MAINTAINER@/${DEB_MAINTAINER:-Stagehand developers <stagehand@localhost>}/" \
  packaging/debian/control.in >"$root/DEBIAN/control"

# Modes and dates do not depend on the checkout's umask or file times.
find "$root" -type d -exec chmod 0755 {} +
find "$root/usr/share" "$root/lib" "$root/etc" -type f -exec chmod 0644 {} +
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb=$out/stagehand_${version}_${arch}.deb
dpkg-deb --build --root-owner-group -Z"${DEB_COMPRESSION:-xz}" "$root" "$deb" >/dev/null
if command -v lintian >/dev/null; then
  lintian --no-tag-display-limit "$deb" >&2 || true
fi
echo "$deb"
