#!/usr/bin/env bash
# install-consul.sh DIR: unpack Debian bullseye's consul package into DIR, so
# that DIR/usr/bin/consul runs the registry tests against a real agent.
#
# Consul left Debian after bullseye, and this machine reaches no other
# download site, so the package comes from bullseye through a private apt
# state under DIR/apt (scripts/fetch-deb.sh). Running it again is a no-op.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
mkdir -p "$1"
dir=$(cd "$1" && pwd)
bin="$dir/usr/bin/consul"
if [ -x "$bin" ]; then
	exit 0
fi

"$(dirname "$0")/fetch-deb.sh" "$dir" bullseye consul
cp -a "$dir/apt/unpacked/." "$dir/"
rm -rf "$dir/apt/unpacked"
"$bin" version | sed -n 1p
