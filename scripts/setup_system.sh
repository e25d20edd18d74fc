#!/usr/bin/env bash
# Install the system packages the book and tests need, or say exactly what is missing.
#   graphviz: `dot`, which torchviz uses to draw autograd graphs
#   chromium: the headless browser of the book's real-browser test (only with --browser)
#   fonts-noto-cjk: Chinese glyphs for the Chinese edition's figures and screenshots
#   npm: fetches Thebe once for `make live` (only with --live)
set -euo pipefail

missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
# Without a Chinese font the Chinese edition's figures (drawn by matplotlib in the build) and
# its pages in the browser test would show empty boxes.
[[ -n "$(fc-list :lang=zh 2>/dev/null)" ]] || missing+=(fonts-noto-cjk)
if [[ "${1:-}" == "--browser" ]]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
if [[ "${1:-}" == "--live" ]]; then
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "setup: installing system packages: ${missing[*]}"
if command -v apt-get >/dev/null 2>&1; then
  if [[ "$(id -u)" -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null && exit 0
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null && exit 0
  fi
fi
echo "setup: missing system packages: ${missing[*]}. Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}; macOS: brew install ${missing[*]}) and re-run." >&2
exit 1
