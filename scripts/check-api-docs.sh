#!/usr/bin/env bash
# Fails when docs/api (the API reference generated from the JSDoc by `npm run docs:api`) differs from what the
# sources generate now.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
npx typedoc --out "$out" --logLevel Error
if ! diff -ru docs/api "$out" > "$out.diff"; then
  head -n 60 "$out.diff"
  rm -f "$out.diff"
  echo "docs/api is out of date with the JSDoc: run 'npm run docs:api' and commit the result" >&2
  exit 1
fi
rm -f "$out.diff"
