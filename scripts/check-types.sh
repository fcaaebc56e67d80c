#!/usr/bin/env bash
# Verifies that worker-configuration.d.ts is what `wrangler types` generates
# from wrangler.toml alone. It runs in a scratch copy so that a developer's
# git-ignored .dev.vars (which wrangler would fold into the types) cannot make
# the check differ between a laptop and CI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$root/wrangler.toml" "$root/worker-configuration.d.ts" "$tmp/"
# Durable Object bindings are typed from the classes main exports, so the
# sources come along (a symlink; .dev.vars stays behind).
ln -s "$root/src" "$tmp/src"
cd "$tmp"
WRANGLER_SEND_METRICS=false "$root/node_modules/.bin/wrangler" types --check worker-configuration.d.ts >/dev/null 2>"$tmp/err" || {
  cat "$tmp/err" >&2
  echo "worker-configuration.d.ts is stale: run 'npx wrangler types' (without a .dev.vars) and commit it" >&2
  exit 1
}
echo "worker-configuration.d.ts is current"
