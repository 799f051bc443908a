#!/usr/bin/env bash
# Builds the web console's vendored JavaScript: installs web/'s packages with
# `npm ci` from the committed lockfile (exact versions, checked integrity) and
# copies only the files the console loads into internal/webui/assets/vendor/,
# which the Go build embeds. Nothing is fetched at run time. Installs Debian's
# nodejs and npm when missing (needs root or sudo then).
#
#   scripts/build-web.sh     install (if needed) and copy; idempotent
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  echo "build-web: installing ${missing[*]}" >&2
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

web=web
out=internal/webui/assets/vendor
# npm ci removes node_modules and installs exactly the lockfile; skip it
# when the installed tree already matches the lockfile byte for byte.
if ! cmp -s "$web/package-lock.json" "$web/node_modules/.package-lock.stamp" 2>/dev/null; then
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$web/package-lock.json" "$web/node_modules/.package-lock.stamp"
fi

nm=$web/node_modules
staging=$(mktemp -d "$out.new.XXXXXX")
trap 'rm -rf "$staging"' EXIT
copy() { # copy SRC DST (relative to the staging dir)
  mkdir -p "$(dirname "$staging/$2")"
  cp "$nm/$1" "$staging/$2"
}
copy htmx.org/dist/htmx.min.js htmx/htmx.min.js
copy htmx-ext-sse/dist/sse.min.js htmx/sse.min.js
copy @xterm/xterm/lib/xterm.js xterm/xterm.js
copy @xterm/xterm/css/xterm.css xterm/xterm.css
copy @xterm/addon-fit/lib/addon-fit.js xterm/addon-fit.js
# noVNC is ES modules that import each other by relative path: its core/
# and vendor/ (pako) keep their layout.
mkdir -p "$staging/novnc"
cp -R "$nm/@novnc/novnc/core" "$nm/@novnc/novnc/vendor" "$staging/novnc/"
find "$staging/novnc" -type f ! -name '*.js' -delete
for lic in htmx.org/LICENSE htmx-ext-sse/LICENSE @xterm/xterm/LICENSE @novnc/novnc/LICENSE.txt; do
  d=$(dirname "$lic"); d=${d#@}; d=${d//\//-}
  mkdir -p "$staging/licenses"; cp "$nm/$lic" "$staging/licenses/$d.txt"
done
# The versions, from the lockfile, for the console's about line and to
# tell a stale copy.
node -e '
  const l = require("./'"$web"'/package-lock.json").packages;
  const out = {};
  for (const [k, v] of Object.entries(l)) if (k.startsWith("node_modules/")) out[k.slice(13)] = v.version;
  console.log(JSON.stringify(out, null, 1));
' > "$staging/versions.json"

# Replace the vendor dir's content, keeping its committed placeholders.
find "$out" -mindepth 1 ! -name .gitkeep ! -name .gitignore -exec rm -rf {} +
cp -R "$staging/." "$out/"
echo "build-web: $(find "$out" -type f ! -name '.git*' | wc -l) files in $out" >&2
