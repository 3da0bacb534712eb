#!/usr/bin/env bash
# install-promtool.sh DIR: unpack Debian bookworm's prometheus package into
# DIR, so that DIR/usr/bin/promtool checks and unit-tests deploy/'s alerting
# rules (promtool check rules, promtool test rules).
#
# The package comes through a private apt state under DIR/apt, as Consul's
# does (scripts/install-consul.sh): the system's sources, lists and cache
# stay untouched, and nothing is installed system-wide. Only promtool is
# used; the Prometheus server in the package is never run. Running it again
# is a no-op.
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

# The mirror this machine already uses (deb822 or one-line sources), else
# Debian's own; the suite is fixed, the mirror is not.
mirror=$( (grep -hsoE 'https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list || true) | head -n1 | tr -d ' ')
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}

apt="$dir/apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/download"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] $mirror bookworm main" >"$apt/sources.list"

cat >"$apt/apt.conf" <<CONF
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::State::Lists "$apt/lists";
Dir::State::Status "$apt/status";
Dir::Cache "$apt/cache";
Debug::NoLocking "true";
APT::Sandbox::User "$(id -un)";
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear DPkg::Post-Invoke;
CONF
opts=(-c "$apt/apt.conf")
: >"$apt/status"

apt-get "${opts[@]}" -qq update
(cd "$apt/download" && apt-get "${opts[@]}" -qq download prometheus)
deb=$(ls "$apt/download"/prometheus_*.deb | head -n1)
dpkg -x "$deb" "$apt/unpacked"
install -D -m 0755 "$apt/unpacked/usr/bin/promtool" "$bin"
rm -rf "$apt/unpacked" "$apt/download" "$apt/cache/archives"
"$bin" --version 2>&1 | sed -n 1p
