#!/usr/bin/env bash
# fetch-deb.sh DIR SUITE PACKAGE: download PACKAGE from Debian SUITE and
# unpack it into DIR/apt/unpacked, for the install scripts of the tools the
# tests need (install-consul.sh, install-promtool.sh).
#
# The package comes through a private apt state under DIR/apt: the
# system's sources, lists and cache stay untouched, nothing is installed
# system-wide, and no root is needed where apt allows it.
set -euo pipefail

if [ $# -ne 3 ]; then
	echo "usage: $0 DIR SUITE PACKAGE" >&2
	exit 2
fi
dir=$1 suite=$2 pkg=$3

# The mirror this machine already uses (deb822 or one-line sources), else
# Debian's own; the suite is fixed, the mirror is not.
mirror=$( (grep -hsoE 'https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list || true) | head -n1 | tr -d ' ')
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}

apt="$dir/apt"
rm -rf "$apt/unpacked" "$apt/download"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/download"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] $mirror $suite main" >"$apt/sources.list"

# A private configuration read after the system's: apt's state lives under
# DIR/apt, and the system's update hooks (which clean /var/cache/apt) do not
# run, so the machine's own apt state is left exactly as it was.
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
# An empty dpkg status: downloading needs no view of what is installed.
: >"$apt/status"

apt-get "${opts[@]}" -qq update
(cd "$apt/download" && apt-get "${opts[@]}" -qq download "$pkg")
deb=$(ls "$apt/download/${pkg}"_*.deb | head -n1)
dpkg -x "$deb" "$apt/unpacked"
rm -rf "$apt/download" "$apt/cache/archives"
