#!/bin/sh
# Build a bitstream: the HLS project, Vitis HLS, Vivado, and the design folder the host loads with
# --bitstream (layout: bitstreams/README.md). Needs vitis_hls and vivado on PATH (source the AMD tools'
# settings64.sh first); without them, --dry-run writes and checks everything and runs nothing.
#
# usage: scripts/build_bitstream.sh --board kv260|zcu104|pynq-z2 [--model DIR] [--out DIR] [--set KEY=VALUE]... [--dry-run] [--force]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
    -h|--help|"")
        sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
        [ -n "${1:-}" ] && exit 0 || exit 2
        ;;
esac
if [ -x "$here/../.venv/bin/tellme" ]; then
    exec "$here/../.venv/bin/tellme" build "$@"
elif command -v tellme >/dev/null 2>&1; then
    exec tellme build "$@"
else
    exec python3 -m tellme.host.cli build "$@"
fi
