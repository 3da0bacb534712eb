#!/usr/bin/env bash
# install-consul.sh DIR: unpack Debian bullseye's consul package into DIR, so
# that DIR/usr/bin/consul runs the registry tests against a real agent.
#
# Consul left Debian after bullseye, and this machine reaches no other
# download site, so the package comes from bullseye through a private apt
# state under DIR/apt: the system's sources, lists and cache stay untouched,
# and no root is needed where apt allows it. Running it again is a no-op.
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

# The mirror this machine already uses (deb822 or one-line sources), else
# Debian's own; the suite is fixed, the mirror is not.
mirror=$( (grep -hsoE 'https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list || true) | head -n1 | tr -d ' ')
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}

apt="$dir/apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/download"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] $mirror bullseye main" >"$apt/sources.list"

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
(cd "$apt/download" && apt-get "${opts[@]}" -qq download consul)
deb=$(ls "$apt/download"/consul_*.deb | head -n1)
dpkg -x "$deb" "$dir"
"$bin" version | sed -n 1p
