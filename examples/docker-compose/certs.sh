#!/bin/sh
# One-shot job of the example (service "certs"): a development CA and the
# SVIDs of the agent, egress and ingress gateway of each mesh, each mesh in
# its own volume; then each mesh's trust bundle is copied into the other's
# volume, which is how the two meshes come to trust each other.
#
# On later runs the CAs are kept (a new CA would orphan everything issued so
# far) and only the SVIDs are issued anew, so they do not expire under a
# demo that keeps its volumes. Every file is replaced by an atomic rename,
# as the agents watch them.
set -eu

# CERTS_ROOT is for compose_test.go; in the container the volumes are here.
ROOT=${CERTS_ROOT:-/var/lib/meshfed-certs}

svids() { # mesh trust-domain
	dir=$ROOT/$1
	if [ ! -f "$dir/ca.pem" ]; then
		meshfed certs init --trust-domain "$2" --out "$dir"
		return
	fi
	for role in agent egress ingress; do
		case $role in
		agent) id=spiffe://$2/meshfed/agent ;;
		*) id=spiffe://$2/meshfed/gateway/$role ;;
		esac
		meshfed certs issue --ca "$dir" --spiffe-id "$id" --out "$dir" --name "$role"
	done
}

copy_bundle() { # from-mesh from-trust-domain to-mesh
	mkdir -p "$ROOT/$3/peers"
	cp "$ROOT/$1/bundle.pem" "$ROOT/$3/peers/.$2.pem.tmp"
	mv "$ROOT/$3/peers/.$2.pem.tmp" "$ROOT/$3/peers/$2.pem"
	echo "copied the trust bundle of $2 to $ROOT/$3/peers/$2.pem"
}

admin_token() { # mesh
	# The bearer token of the agent's admin API (admin.tokenFile), made
	# once: 32 random bytes in hex, readable by the agent's user only.
	file=$ROOT/$1/admin.token
	[ -f "$file" ] && return
	(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file.tmp")
	mv "$file.tmp" "$file"
	echo "wrote the admin API token of $1 to $file"
}

svids mesh-a mesh-a.example
svids mesh-b mesh-b.example
admin_token mesh-a
admin_token mesh-b
copy_bundle mesh-a mesh-a.example mesh-b
copy_bundle mesh-b mesh-b.example mesh-a
