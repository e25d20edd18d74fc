#!/usr/bin/env bash
# The book's execution cache (_build/.jupyter_cache, shared by both editions) matches a chapter by
# its code cells alone. A chapter's outputs also depend on densenet_edu and on the recorded
# results the chapters read (benchmarks/*.json), so when either changes, the cache goes: every
# chapter is executed afresh, never shown with stale outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=_build/.jupyter_cache
stamp=_build/.jupyter_cache.package-sha256
now=$(find densenet_edu benchmarks -type f ! -path '*/__pycache__/*' ! -name '*.pyc' \
  \( -path 'densenet_edu/*' -o -name '*.json' \) -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [[ -d "$cache" && "$(cat "$stamp" 2>/dev/null)" != "$now" ]]; then
  echo "book: densenet_edu or benchmarks/*.json changed since the chapters were executed; executing them afresh"
  rm -rf "$cache"
fi
# Sphinx re-reads only pages whose source changed, so without a cache it would keep showing the
# outputs of its last read: its saved environments go with the cache, and every page is read
# (and executed) again.
if [[ ! -d "$cache" ]]; then
  rm -rf _build/.doctrees _build/zh/_build/.doctrees
fi
mkdir -p _build
echo "$now" > "$stamp"
