#!/usr/bin/env bash
# install-promtool.sh DIR: unpack Debian bookworm's prometheus package into
# DIR, so that DIR/usr/bin/promtool checks and unit-tests deploy/'s alerting
# rules (promtool check rules, promtool test rules).
#
# The package comes through a private apt state under DIR/apt
# (scripts/fetch-deb.sh). Only promtool is kept; the Prometheus server in
# the package is never run. Running it again is a no-op.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
mkdir -p "$1"
dir=$(cd "$1" && pwd)
bin="$dir/usr/bin/promtool"
if [ -x "$bin" ]; then
	exit 0
fi

"$(dirname "$0")/fetch-deb.sh" "$dir" bookworm prometheus
install -D -m 0755 "$dir/apt/unpacked/usr/bin/promtool" "$bin"
rm -rf "$dir/apt/unpacked"
"$bin" --version 2>&1 | sed -n 1p
