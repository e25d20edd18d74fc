#!/usr/bin/env bash
# The book's execution cache (_build/.jupyter_cache, shared by both editions) matches a chapter by
# its code cells alone. A chapter's outputs also depend on densenet_edu, so when the package
# changes, the cache goes: every chapter is executed afresh, never shown with stale outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=_build/.jupyter_cache
stamp=_build/.jupyter_cache.package-sha256
now=$(find densenet_edu -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [[ -d "$cache" && "$(cat "$stamp" 2>/dev/null)" != "$now" ]]; then
  echo "book: densenet_edu changed since the chapters were last executed; executing them afresh"
  rm -rf "$cache"
fi
mkdir -p _build
echo "$now" > "$stamp"
