#!/usr/bin/env bash
# Render an evaluation report (diffris evaluate --report) in headless Chromium and save a PNG.
#
#   tools/screenshot_report.sh report.html report.png [WIDTH,HEIGHT]
#
# Needs Debian's chromium (apt-get install chromium); exits 3 when it is not installed. The page
# is opened from disk with networking, sync and updates off: the report must not need the network.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
    exit 2
fi
report=$(realpath "$1")
out=$(realpath -m "$2")
size=${3:-1280,2000}
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [[ -z "$browser" ]]; then
    echo "chromium is not installed (apt-get install chromium)" >&2
    exit 3
fi
if [[ ! -f "$report" ]]; then
    echo "$report does not exist" >&2
    exit 1
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$out"
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$profile" \
    --screenshot="$out" --window-size="$size" "file://$report" >/dev/null 2>"$profile/stderr" || {
    cat "$profile/stderr" >&2
    exit 1
}
if [[ ! -s "$out" ]]; then
    cat "$profile/stderr" >&2
    echo "chromium wrote no screenshot to $out" >&2
    exit 1
fi
echo "$out"
