// Package dockercompose_test checks the docker-compose example without
// Docker: compose.yaml's structure, the Envoy bootstraps, the agent
// configurations and registry files, and that they agree with each other
// (ports, host names, paths inside the containers). The agent configurations
// are read loosely here, for what the example wires together; whether
// meshfed accepts them is config.Load's to say.
package dockercompose_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/config"
	envoyconfigs "github.com/meshfed/meshfed/envoy-configs"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry/file"
)

// envoyImage is the Envoy every gateway runs.
const envoyImage = "envoyproxy/envoy:v1.40.0"

// meshes are the two meshes of the example, by the suffix of their
// services (agent-a, egress-a, ingress-a) and files.
var meshes = []string{"a", "b"}

// wantServices is every service of compose.yaml.
var wantServices = []string{
	"certs",
	"agent-a", "egress-a", "ingress-a", "inventory", "client",
	"agent-b", "egress-b", "ingress-b", "payments",
}

// ---- compose.yaml, the parts the checks read ----

type composeFile struct {
	Services map[string]service `yaml:"services"`
	Networks map[string]any     `yaml:"networks"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string                `yaml:"image"`
	Build       *build                `yaml:"build"`
	Command     []string              `yaml:"command"`
	Volumes     []string              `yaml:"volumes"`
	DependsOn   map[string]dependency `yaml:"depends_on"`
	Networks    networks              `yaml:"networks"`
	NetworkMode string                `yaml:"network_mode"`
	Ports       []string              `yaml:"ports"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type build struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

type dependency struct {
	Condition string `yaml:"condition"`
}

// networks is a service's networks, written as a list or as a map.
type networks map[string]serviceNetwork

type serviceNetwork struct {
	Aliases     []string `yaml:"aliases"`
	IPv4Address string   `yaml:"ipv4_address"`
}

func (n *networks) UnmarshalYAML(node *yaml.Node) error {
	*n = networks{}
	if node.Kind == yaml.SequenceNode {
		var names []string
		if err := node.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			(*n)[name] = serviceNetwork{}
		}
		return nil
	}
	m := map[string]serviceNetwork{}
	if err := node.Decode(&m); err != nil {
		return err
	}
	for k, v := range m {
		(*n)[k] = v
	}
	return nil
}

// mount is one entry of a service's volumes (short syntax).
type mount struct {
	Source   string // a named volume, or a path relative to this folder
	Target   string
	ReadOnly bool
	Bind     bool
}

func parseMount(t *testing.T, s string) mount {
	t.Helper()
	parts := strings.Split(s, ":")
	require.Truef(t, len(parts) == 2 || len(parts) == 3, "volume %q is not SOURCE:TARGET[:ro]", s)
	m := mount{Source: parts[0], Target: parts[1]}
	if len(parts) == 3 {
		require.Equalf(t, "ro", parts[2], "volume %q: the only option used is ro", s)
		m.ReadOnly = true
	}
	m.Bind = strings.HasPrefix(m.Source, ".")
	require.Truef(t, path.IsAbs(m.Target), "volume %q: the target must be absolute", s)
	require.Falsef(t, filepath.IsAbs(m.Source), "volume %q: a host path outside the example is not portable", s)
	return m
}

// resolve maps a path inside svc's container to where it comes from: a path
// on the host for a bind mount, or a named volume and the path inside it.
func resolve(t *testing.T, svc service, p string) (m mount, rest string, ok bool) {
	t.Helper()
	best := -1
	for _, v := range svc.Volumes {
		mm := parseMount(t, v)
		if r, found := strings.CutPrefix(p, mm.Target); found && (r == "" || strings.HasPrefix(r, "/")) && len(mm.Target) > best {
			best, m, rest = len(mm.Target), mm, strings.TrimPrefix(r, "/")
		}
	}
	return m, rest, best >= 0
}

// hostFile is the file of this folder that p is inside svc's container.
func hostFile(t *testing.T, svc service, p string) string {
	t.Helper()
	m, rest, ok := resolve(t, svc, p)
	require.Truef(t, ok, "%s is on no volume of the service", p)
	require.Truef(t, m.Bind, "%s is on volume %s, not on a file of this folder", p, m.Source)
	return filepath.Join(filepath.FromSlash(m.Source), filepath.FromSlash(rest))
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("compose.yaml")
	require.NoError(t, err)
	var c composeFile
	require.NoError(t, yaml.Unmarshal(raw, &c))
	return c
}

// pinned reports whether an image reference names one version: a digest,
// or a tag other than latest.
func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndex(image, ":")
	return i > strings.LastIndex(image, "/") && image[i+1:] != "" && image[i+1:] != "latest"
}

// publishedPorts are svc's published ports: container port to host port.
// Every one binds the host's loopback.
func publishedPorts(t *testing.T, name string, svc service) map[uint32]uint32 {
	t.Helper()
	out := map[uint32]uint32{}
	for _, p := range svc.Ports {
		parts := strings.Split(p, ":")
		require.Lenf(t, parts, 3, "%s: port %q must be HOST_IP:HOST_PORT:CONTAINER_PORT", name, p)
		require.Equalf(t, "127.0.0.1", parts[0], "%s: port %q is published beyond the host's loopback", name, p)
		host, err := strconv.ParseUint(parts[1], 10, 16)
		require.NoError(t, err)
		ctr, err := strconv.ParseUint(parts[2], 10, 16)
		require.NoError(t, err)
		out[uint32(ctr)] = uint32(host)
	}
	return out
}

// sharesNetwork reports whether a and b have a network in common, which is
// when Docker's DNS resolves one's name in the other.
func sharesNetwork(a, b service) bool {
	for n := range a.Networks {
		if _, ok := b.Networks[n]; ok {
			return true
		}
	}
	return false
}

// reachableAs reports whether from can reach name: a service on a common
// network, or an alias on a network from is on.
func reachableAs(c composeFile, from service, name string) bool {
	if to, ok := c.Services[name]; ok && sharesNetwork(from, to) {
		return true
	}
	for _, to := range c.Services {
		for n, sn := range to.Networks {
			if _, ok := from.Networks[n]; ok && slices.Contains(sn.Aliases, name) {
				return true
			}
		}
	}
	return false
}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	names := make([]string, 0, len(c.Services))
	for name := range c.Services {
		names = append(names, name)
	}
	require.ElementsMatch(t, wantServices, names)

	for name, svc := range c.Services {
		t.Run(name, func(t *testing.T) {
			if svc.Build != nil {
				// The build context is the repository root.
				gomod, err := os.ReadFile(filepath.Join(filepath.FromSlash(svc.Build.Context), "go.mod"))
				require.NoError(t, err, "build.context must be the repository root")
				require.Contains(t, string(gomod), "module github.com/meshfed/meshfed\n")
				require.FileExists(t, filepath.Join(filepath.FromSlash(svc.Build.Context), filepath.FromSlash(svc.Build.Dockerfile)))
				require.NotEmpty(t, svc.Image, "a built image is named, so that every service shares it")
			} else {
				require.Truef(t, pinned(svc.Image), "image %q is not pinned to a tag or digest", svc.Image)
			}
			if strings.HasPrefix(name, "egress-") || strings.HasPrefix(name, "ingress-") {
				require.Equal(t, envoyImage, svc.Image)
			}

			for _, v := range svc.Volumes {
				m := parseMount(t, v)
				if m.Bind {
					_, err := os.Stat(filepath.FromSlash(m.Source))
					require.NoErrorf(t, err, "volume %q mounts something that is not in this folder", v)
				} else {
					require.Containsf(t, c.Volumes, m.Source, "volume %q is not declared under volumes", v)
				}
			}

			for dep, d := range svc.DependsOn {
				target, ok := c.Services[dep]
				require.Truef(t, ok, "depends_on names %q, which is not a service", dep)
				require.Contains(t, []string{"service_started", "service_healthy", "service_completed_successfully"}, d.Condition, "depends_on %s", dep)
				if d.Condition == "service_healthy" {
					require.NotNilf(t, target.Healthcheck, "depends_on %s: service_healthy, but %s has no healthcheck", dep, dep)
				}
			}

			if svc.NetworkMode != "" {
				require.Equal(t, "none", svc.NetworkMode)
				require.Empty(t, svc.Networks)
				require.Empty(t, svc.Ports)
			} else {
				require.NotEmpty(t, svc.Networks, "every service names its networks")
			}
			for n := range svc.Networks {
				require.Containsf(t, c.Networks, n, "network %q is not declared under networks", n)
			}
			publishedPorts(t, name, svc)
		})
	}

	// The certificates exist before any agent starts.
	for _, m := range meshes {
		require.Equal(t, "service_completed_successfully", c.Services["agent-"+m].DependsOn["certs"].Condition)
	}
	// No cycle: compose would refuse to start.
	state := map[string]int{}
	var visit func(string, []string)
	visit = func(name string, stack []string) {
		switch state[name] {
		case 1:
			t.Fatalf("depends_on cycle: %s -> %s", strings.Join(stack, " -> "), name)
		case 2:
			return
		}
		state[name] = 1
		for dep := range c.Services[name].DependsOn {
			visit(dep, append(stack, name))
		}
		state[name] = 2
	}
	for name := range c.Services {
		visit(name, nil)
	}
}

// ---- meshfed/mesh-*.yaml, loosely: what the example wires together ----

type agentConfig struct {
	TrustDomain string `yaml:"trustDomain"`
	Identity    map[string]struct {
		Cert string `yaml:"cert"`
		Key  string `yaml:"key"`
	} `yaml:"identity"`
	TrustBundles map[string]struct {
		File string `yaml:"file"`
	} `yaml:"trustBundles"`
	Federation struct {
		Listen  string     `yaml:"listen"`
		Ingress []endpoint `yaml:"ingress"`
	} `yaml:"federation"`
	Peers []peerConfig `yaml:"peers"`
	Store struct {
		Path string `yaml:"path"`
	} `yaml:"store"`
	XDS struct {
		Listen string `yaml:"listen"`
	} `yaml:"xds"`
	Admin struct {
		Listen           string `yaml:"listen"`
		AllowNonLoopback bool   `yaml:"allowNonLoopback"`
		TokenFile        string `yaml:"tokenFile"`
	} `yaml:"admin"`
	DNS struct {
		Listen           string `yaml:"listen"`
		AllowNonLoopback bool   `yaml:"allowNonLoopback"`
	} `yaml:"dns"`
	Gateways struct {
		Egress struct {
			NodeIDs        []string `yaml:"nodeIds"`
			Listen         endpoint `yaml:"listen"`
			Advertise      string   `yaml:"advertise"`
			AllowedSources []string `yaml:"allowedSources"`
		} `yaml:"egress"`
		Ingress struct {
			NodeIDs []string `yaml:"nodeIds"`
			Listen  endpoint `yaml:"listen"`
		} `yaml:"ingress"`
	} `yaml:"gateways"`
	Exports struct {
		File string `yaml:"file"`
	} `yaml:"exports"`
}

type peerConfig struct {
	Name        string `yaml:"name"`
	TrustDomain string `yaml:"trustDomain"`
	Dial        string `yaml:"dial"`
}

type endpoint struct {
	Address string `yaml:"address"`
	Port    uint32 `yaml:"port"`
}

// agent is one mesh's agent: its service, and its configuration as found
// through the service's command and mounts.
type agent struct {
	svc     service
	cfgPath string // inside the container
	file    string // in this folder
	cfg     agentConfig
}

func loadAgent(t *testing.T, c composeFile, mesh string) agent {
	t.Helper()
	name := "agent-" + mesh
	svc, ok := c.Services[name]
	require.Truef(t, ok, "no service %s", name)
	require.GreaterOrEqual(t, len(svc.Command), 4, "%s: command", name)
	require.Equal(t, []string{"meshfed", "run", "--config"}, svc.Command[:3], "%s: command", name)
	a := agent{svc: svc, cfgPath: svc.Command[3]}
	a.file = hostFile(t, svc, a.cfgPath)
	require.Equal(t, filepath.Join("meshfed", "mesh-"+mesh+".yaml"), a.file, "%s: configuration file", name)
	raw, err := os.ReadFile(a.file)
	require.NoError(t, err, "%s: the configuration its command names", name)
	require.NoError(t, yaml.Unmarshal(raw, &a.cfg), a.file)
	return a
}

func port(t *testing.T, hostport string) uint32 {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	require.NoError(t, err)
	n, err := strconv.ParseUint(p, 10, 16)
	require.NoError(t, err)
	return uint32(n)
}

// Ports are compared as int: testify prints unsigned numbers in hex.
func requirePort(t *testing.T, want, got uint32, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, int(want), int(got), msgAndArgs...)
}

func other(mesh string) string {
	if mesh == "a" {
		return "b"
	}
	return "a"
}

func TestAgentConfigs(t *testing.T) {
	c := loadCompose(t)
	agents := map[string]agent{}
	for _, m := range meshes {
		agents[m] = loadAgent(t, c, m)
	}
	dialers := 0
	for _, m := range meshes {
		a, peer := agents[m], agents[other(m)]
		t.Run("mesh-"+m, func(t *testing.T) {
			cfg := a.cfg
			require.Equal(t, "mesh-"+m+".example", cfg.TrustDomain)

			// Certificate material comes from the mesh's own certs volume,
			// at the path the certs service writes it to.
			certsSvc := c.Services["certs"]
			for role, f := range cfg.Identity {
				for _, p := range []string{f.Cert, f.Key} {
					requireSameVolume(t, a.svc, certsSvc, p, "identity."+role)
				}
			}
			require.ElementsMatch(t, []string{"agent", "egress", "ingress"}, mapKeys(cfg.Identity), "identity")
			require.ElementsMatch(t, []string{cfg.TrustDomain, peer.cfg.TrustDomain}, mapKeys(cfg.TrustBundles), "trustBundles")
			for td, b := range cfg.TrustBundles {
				requireSameVolume(t, a.svc, certsSvc, b.File, "trustBundles."+td)
			}
			requireSameVolume(t, a.svc, certsSvc, cfg.Admin.TokenFile, "admin.tokenFile")
			// Only the mesh's own certificates are mounted, read-only.
			for _, v := range a.svc.Volumes {
				mm := parseMount(t, v)
				if strings.HasPrefix(mm.Source, "certs-") {
					require.Equal(t, "certs-"+m, mm.Source)
					require.True(t, mm.ReadOnly, "%s is mounted read-only", mm.Source)
				}
			}

			// The store is on a named, writable volume.
			mm, _, ok := resolve(t, a.svc, cfg.Store.Path)
			require.True(t, ok, "store.path %s is on no volume: it would not survive the container", cfg.Store.Path)
			require.False(t, mm.Bind, "store.path is on a named volume")
			require.False(t, mm.ReadOnly, "store.path is writable")

			// The registry file, relative to the configuration.
			require.Equal(t, "services-"+m+".yaml", cfg.Exports.File)
			require.FileExists(t, hostFile(t, a.svc, path.Join(path.Dir(a.cfgPath), cfg.Exports.File)))

			// The admin API is published on the host.
			published := publishedPorts(t, "agent-"+m, a.svc)
			require.Contains(t, published, port(t, cfg.Admin.Listen), "admin.listen is published")
			requireProbes(t, a.svc, port(t, cfg.Admin.Listen))
			// The agent binds a non-loopback address only when told: in a
			// container, loopback is unreachable from anywhere else.
			require.True(t, cfg.Admin.AllowNonLoopback, "admin.allowNonLoopback, for admin.listen %s", cfg.Admin.Listen)
			if cfg.DNS.Listen != "" {
				require.True(t, cfg.DNS.AllowNonLoopback, "dns.allowNonLoopback, for dns.listen %s", cfg.DNS.Listen)
			}

			// The gateways.
			require.Equal(t, []string{"egress-gateway"}, cfg.Gateways.Egress.NodeIDs)
			require.Equal(t, []string{"ingress-gateway"}, cfg.Gateways.Ingress.NodeIDs)
			ip, err := netip.ParseAddr(cfg.Gateways.Ingress.Listen.Address)
			require.NoError(t, err, "the ingress listener binds an IP")
			require.True(t, ip.IsUnspecified(), "the ingress gateway in its own container binds every address, not %s", ip)
			egressName := "egress-" + m
			requireMeshSideEgress(t, c, m, cfg.Gateways.Egress.Listen.Address, cfg.Gateways.Egress.AllowedSources)
			require.Equal(t, egressName, cfg.Gateways.Egress.Advertise, "workloads dial the egress gateway's service name")
			require.Contains(t, publishedPorts(t, egressName, c.Services[egressName]), uint32(8080), "the egress HTTP listener of the imported service's port is published")

			// federation.ingress is what the peer's egress gateway dials: a
			// name it resolves that leads to this mesh's ingress gateway, on
			// the port its TLS listener binds. Peers refuse a DNS name of one
			// label, so it is a network alias.
			require.Len(t, cfg.Federation.Ingress, 1)
			in := cfg.Federation.Ingress[0]
			require.NoError(t, validate.DNSName("federation.ingress[0].address", in.Address))
			requirePort(t, cfg.Gateways.Ingress.Listen.Port, in.Port)
			ingress := c.Services["ingress-"+m]
			require.True(t, slices.ContainsFunc(mapValues(ingress.Networks), func(n serviceNetwork) bool { return slices.Contains(n.Aliases, in.Address) }),
				"%s is an alias of ingress-%s", in.Address, m)
			require.True(t, reachableAs(c, c.Services["egress-"+other(m)], in.Address), "egress-%s resolves %s", other(m), in.Address)

			// Exactly one side dials, the other's Hamlet listener.
			require.Len(t, cfg.Peers, 1)
			p := cfg.Peers[0]
			require.Equal(t, "mesh-"+other(m), p.Name)
			require.Equal(t, peer.cfg.TrustDomain, p.TrustDomain)
			if p.Dial != "" {
				dialers++
				host, _, err := net.SplitHostPort(p.Dial)
				require.NoError(t, err)
				require.Equal(t, "agent-"+other(m), host)
				require.True(t, reachableAs(c, a.svc, host), "agent-%s resolves %s", m, host)
				requirePort(t, port(t, peer.cfg.Federation.Listen), port(t, p.Dial))
				listenHost, _, err := net.SplitHostPort(peer.cfg.Federation.Listen)
				require.NoError(t, err)
				ip, err := netip.ParseAddr(listenHost)
				require.NoError(t, err)
				require.True(t, ip.IsUnspecified(), "agent-%s's federation.listen %s takes connections from other containers", other(m), peer.cfg.Federation.Listen)
			}
		})
	}
	require.Equal(t, 1, dialers, "exactly one agent dials the other")
}

// requireSameVolume checks that p is, inside agentSvc, on the named volume
// that certsSvc mounts at the same path, so the agent reads what certs.sh
// writes.
func requireSameVolume(t *testing.T, agentSvc, certsSvc service, p, field string) {
	t.Helper()
	ma, ra, ok := resolve(t, agentSvc, p)
	require.Truef(t, ok, "%s: %s is on no volume of the agent", field, p)
	require.Falsef(t, ma.Bind, "%s: %s is on a bind mount, not the certificates volume", field, p)
	mc, rc, ok := resolve(t, certsSvc, p)
	require.Truef(t, ok, "%s: %s is on no volume of the certs service", field, p)
	require.Equalf(t, mc.Source, ma.Source, "%s: %s", field, p)
	require.Equal(t, rc, ra, "%s: %s", field, p)
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mapValues[V any](m map[string]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// requireProbes checks that svc's health check asks the service's own port.
func requireProbes(t *testing.T, svc service, port uint32) {
	t.Helper()
	require.NotNil(t, svc.Healthcheck, "healthcheck")
	require.Equal(t, []string{"CMD", "upstream", "-probe"}, svc.Healthcheck.Test[:3], "healthcheck")
	require.Len(t, svc.Healthcheck.Test, 4, "healthcheck")
	require.True(t, strings.HasPrefix(svc.Healthcheck.Test[3], fmt.Sprintf("http://127.0.0.1:%d/", port)), "the healthcheck probes port %d: %s", port, svc.Healthcheck.Test[3])
}

// ---- envoy/*.yaml ----

func TestEnvoyBootstraps(t *testing.T) {
	c := loadCompose(t)
	files, err := filepath.Glob(filepath.Join("envoy", "*.yaml"))
	require.NoError(t, err)
	want := []string{}
	for _, m := range meshes {
		want = append(want, filepath.Join("envoy", "egress-"+m+".yaml"), filepath.Join("envoy", "ingress-"+m+".yaml"))
	}
	require.ElementsMatch(t, want, files, "one bootstrap per gateway")

	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml") // egress-a
		role, mesh, _ := strings.Cut(name, "-")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			require.NoError(t, err)
			b, err := envoyconfigs.ParseBootstrap(raw)
			require.NoError(t, err)

			require.Equal(t, role+"-gateway", b.GetNode().GetId())
			require.Equal(t, "mesh-"+mesh+"-"+role, b.GetNode().GetCluster())
			admin := b.GetAdmin().GetAddress().GetSocketAddress()
			ip, err := netip.ParseAddr(admin.GetAddress())
			require.NoError(t, err, "admin address")
			require.True(t, ip.IsLoopback(), "admin binds %s, not loopback", ip)

			dyn := b.GetDynamicResources()
			require.NotNil(t, dyn.GetCdsConfig().GetAds(), "cds_config over ADS")
			require.NotNil(t, dyn.GetLdsConfig().GetAds(), "lds_config over ADS")
			grpc := dyn.GetAdsConfig().GetGrpcServices()
			require.Len(t, grpc, 1)
			adsName := grpc[0].GetEnvoyGrpc().GetClusterName()
			require.NotEmpty(t, adsName, "ads_config uses an envoy_grpc cluster")
			var ads *clusterv3.Cluster
			for _, cl := range b.GetStaticResources().GetClusters() {
				if cl.GetName() == adsName {
					ads = cl
				}
			}
			require.NotNil(t, ads)

			// The agent's compose host name, resolved by DNS, on its xDS port.
			require.Contains(t, []clusterv3.Cluster_DiscoveryType{clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS}, ads.GetType(), "a host name needs a DNS cluster")
			eps := ads.GetLoadAssignment().GetEndpoints()
			require.Len(t, eps, 1)
			require.Len(t, eps[0].GetLbEndpoints(), 1)
			sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			a := loadAgent(t, c, mesh)
			require.Equal(t, "agent-"+mesh, sa.GetAddress())
			requirePort(t, port(t, a.cfg.XDS.Listen), sa.GetPortValue(), "xds.listen of %s", a.file)
			// xDS is gRPC: HTTP/2 to the agent.
			opts, ok := ads.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
			require.True(t, ok, "the ADS cluster sets HttpProtocolOptions")
			var hpo httpv3.HttpProtocolOptions
			require.NoError(t, opts.UnmarshalTo(&hpo))
			require.NotNil(t, hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions(), "the ADS cluster speaks HTTP/2")

			// The gateway's service runs this file and reaches its agent.
			svc, ok := c.Services[name]
			require.True(t, ok, "a service %s runs %s", name, file)
			require.Equal(t, []string{"envoy", "--config-path", "/etc/envoy/envoy.yaml"}, svc.Command[:3])
			require.Equal(t, file, hostFile(t, svc, "/etc/envoy/envoy.yaml"))
			require.True(t, reachableAs(c, svc, "agent-"+mesh), "%s resolves agent-%s", name, mesh)
			require.Equal(t, "service_started", svc.DependsOn["agent-"+mesh].Condition)
		})
	}
}

// ---- meshfed/services-*.yaml, strictly ----

type registry struct {
	Services []struct {
		Name      string   `yaml:"name"`
		FQDN      string   `yaml:"fqdn"`
		Mode      string   `yaml:"mode"`
		Consumers []string `yaml:"consumers"`
		Ports     []struct {
			Name      string `yaml:"name"`
			Port      uint32 `yaml:"port"`
			Protocol  string `yaml:"protocol"`
			Endpoints []struct {
				Address string `yaml:"address"`
				Port    uint32 `yaml:"port"`
			} `yaml:"endpoints"`
		} `yaml:"ports"`
	} `yaml:"services"`
}

func loadRegistry(t *testing.T, file string) registry {
	t.Helper()
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var r registry
	require.NoError(t, dec.Decode(&r), file)
	return r
}

// listenPort is the port an upstream service's command listens on.
func listenPort(t *testing.T, svc service) uint32 {
	t.Helper()
	i := slices.Index(svc.Command, "-listen")
	require.True(t, i >= 0 && i+1 < len(svc.Command), "the upstream's command sets -listen")
	return port(t, svc.Command[i+1])
}

func TestRegistryFiles(t *testing.T) {
	c := loadCompose(t)
	upstream := map[string]string{"a": "inventory", "b": "payments"}
	for _, m := range meshes {
		file := filepath.Join("meshfed", "services-"+m+".yaml")
		t.Run(file, func(t *testing.T) {
			a := loadAgent(t, c, m)
			r := loadRegistry(t, file)
			require.Len(t, r.Services, 1)
			s := r.Services[0]
			require.Equal(t, upstream[m], s.Name)
			require.NoError(t, validate.DNSName("fqdn", s.FQDN))
			require.Equal(t, s.Name+"."+a.cfg.TrustDomain, s.FQDN)
			require.Contains(t, []string{"terminate", "passthrough"}, s.Mode)
			require.NotEmpty(t, s.Consumers)
			for _, consumer := range s.Consumers {
				require.Truef(t, slices.ContainsFunc(a.cfg.Peers, func(p peerConfig) bool { return p.Name == consumer }),
					"consumer %q is a peer of mesh-%s", consumer, m)
			}
			require.NotEmpty(t, s.Ports)
			for _, p := range s.Ports {
				require.NotEmpty(t, p.Name)
				require.NotZero(t, p.Port)
				require.Truef(t, model.Protocol(p.Protocol).Valid(), "protocol %q", p.Protocol)
				require.NotEmpty(t, p.Endpoints)
				for _, e := range p.Endpoints {
					// The ingress gateway resolves the address, and the
					// upstream listens on the port.
					require.Truef(t, reachableAs(c, c.Services["ingress-"+m], e.Address), "ingress-%s resolves %s", m, e.Address)
					svc := c.Services[e.Address]
					requirePort(t, listenPort(t, svc), e.Port, "%s listens on the endpoint's port", e.Address)
					requireProbes(t, svc, e.Port)
					require.False(t, sharesNetwork(svc, c.Services["egress-"+other(m)]), "the other mesh reaches %s only through ingress-%s", e.Address, m)
				}
			}
		})
	}
}

// TestClient checks that the client calls an HTTP service mesh-b exports to
// mesh-a, through egress-a's HTTP listener, without a way around it.
func TestClient(t *testing.T) {
	c := loadCompose(t)
	client := c.Services["client"]
	i := slices.Index(client.Command, "--connect-to")
	require.True(t, i >= 0 && i+1 < len(client.Command), "the client connects to the egress gateway")
	// HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT
	parts := strings.Split(client.Command[i+1], ":")
	require.Len(t, parts, 4)
	url := client.Command[len(client.Command)-1]
	require.Equal(t, fmt.Sprintf("http://%s:%s/", parts[0], parts[1]), url)

	a, b := loadAgent(t, c, "a"), loadAgent(t, c, "b")
	require.Equal(t, a.cfg.Gateways.Egress.Advertise, parts[2])
	require.Equal(t, parts[1], parts[3], "the egress gateway serves the service on its own port")
	require.True(t, reachableAs(c, client, parts[2]))

	r := loadRegistry(t, filepath.Join(path.Dir(b.file), b.cfg.Exports.File))
	found := false
	for _, s := range r.Services {
		for _, p := range s.Ports {
			if s.FQDN == parts[0] && strconv.FormatUint(uint64(p.Port), 10) == parts[1] {
				found = true
				require.Contains(t, s.Consumers, "mesh-a")
				require.True(t, model.Protocol(p.Protocol).RoutedByHost(), "the egress HTTP listener routes %s by Host", p.Protocol)
			}
		}
	}
	require.True(t, found, "%s:%s is exported by mesh-b", parts[0], parts[1])
	require.False(t, reachableAs(c, client, "payments"), "the client cannot reach payments except through the gateways")
}

// TestCertsScript runs certs.sh with the meshfed binary, twice (the second
// run keeps the CAs and issues new SVIDs), and checks that it writes every
// file the agents are configured to read, with the right identities.
func TestCertsScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds meshfed")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build meshfed with")
	}
	bin := t.TempDir()
	build := exec.Command(goBin, "build", "-o", filepath.Join(bin, "meshfed"), "./cmd/meshfed")
	build.Dir = filepath.Join("..", "..")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/meshfed:\n%s", out)

	c := loadCompose(t)
	certsSvc := c.Services["certs"]
	require.Equal(t, []string{"sh", "/opt/meshfed/certs.sh"}, certsSvc.Command)
	script := hostFile(t, certsSvc, "/opt/meshfed/certs.sh")

	// The volumes of the certs service, each a folder of root.
	root := t.TempDir()
	const certsRoot = "/var/lib/meshfed-certs"
	for _, v := range certsSvc.Volumes {
		m := parseMount(t, v)
		if !m.Bind {
			require.True(t, strings.HasPrefix(m.Target, certsRoot+"/"), "certs.sh writes under %s", certsRoot)
			require.NoError(t, os.MkdirAll(filepath.Join(root, strings.TrimPrefix(m.Target, certsRoot+"/")), 0o755))
		}
	}
	var caBefore []byte
	for run := 1; run <= 2; run++ {
		cmd := exec.Command(sh, script)
		cmd.Env = append(os.Environ(), "CERTS_ROOT="+root, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "run %d of certs.sh:\n%s", run, out)
		ca, err := os.ReadFile(filepath.Join(root, "mesh-a", "ca.pem"))
		require.NoError(t, err)
		if run == 1 {
			caBefore = ca
		} else {
			require.Equal(t, caBefore, ca, "a second run keeps the CA")
		}
	}

	inRoot := func(p string) string {
		rest, ok := strings.CutPrefix(p, certsRoot+"/")
		require.Truef(t, ok, "%s is not under %s", p, certsRoot)
		return filepath.Join(root, filepath.FromSlash(rest))
	}
	for _, m := range meshes {
		a := loadAgent(t, c, m)
		td := a.cfg.TrustDomain
		wantIDs := map[string]string{
			"agent":   "spiffe://" + td + "/meshfed/agent",
			"egress":  "spiffe://" + td + "/meshfed/gateway/egress",
			"ingress": "spiffe://" + td + "/meshfed/gateway/ingress",
		}
		for role, f := range a.cfg.Identity {
			cert := readCert(t, inRoot(f.Cert))
			require.Len(t, cert.URIs, 1)
			require.Equal(t, wantIDs[role], cert.URIs[0].String(), "identity.%s of mesh-%s", role, m)
			require.FileExists(t, inRoot(f.Key))
		}
		for btd, b := range a.cfg.TrustBundles {
			got, err := os.ReadFile(inRoot(b.File))
			require.NoError(t, err)
			owner := "mesh-" + strings.TrimSuffix(strings.TrimPrefix(btd, "mesh-"), ".example")
			want, err := os.ReadFile(filepath.Join(root, owner, "bundle.pem"))
			require.NoError(t, err)
			require.Equal(t, string(want), string(got), "trustBundles.%s of mesh-%s is %s's bundle", btd, m, owner)
		}
		_, err := admin.ReadToken(inRoot(a.cfg.Admin.TokenFile))
		require.NoError(t, err, "admin.tokenFile of mesh-%s", m)
		info, err := os.Stat(inRoot(a.cfg.Admin.TokenFile))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "admin.tokenFile of mesh-%s is the agent's user's only", m)
	}

	// A named volume starts out owned by the owner of the image's folder it
	// is mounted on, so the image creates each folder where a volume the
	// unprivileged services write to is mounted (install -d -o 65532).
	created := dockerfileFolders(t, filepath.Join(filepath.FromSlash(certsSvc.Build.Context), filepath.FromSlash(certsSvc.Build.Dockerfile)))
	for _, name := range []string{"certs", "agent-a", "agent-b"} {
		for _, v := range c.Services[name].Volumes {
			if m := parseMount(t, v); !m.Bind && !m.ReadOnly {
				require.Containsf(t, created, m.Target, "the Dockerfile creates %s, where %s mounts %s", m.Target, name, m.Source)
			}
		}
	}
}

// dockerfileFolders are the folders an `install -d -o 65532` in the
// Dockerfile creates.
func dockerfileFolders(t *testing.T, file string) []string {
	t.Helper()
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		_, args, ok := strings.Cut(line, "install -d ")
		if !ok || !strings.Contains(args, "-o 65532") {
			continue
		}
		for _, f := range strings.Fields(args) {
			if strings.HasPrefix(f, "/") {
				out = append(out, f)
			}
		}
	}
	require.NotEmpty(t, out, "%s creates no folder with install -d -o 65532", file)
	return out
}

func readCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	block, _ := pem.Decode(raw)
	require.NotNil(t, block, "%s holds no PEM", file)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return cert
}

// The agents' configurations and registry files are what `meshfed run`
// accepts.
func TestAgentConfigsLoad(t *testing.T) {
	for _, mesh := range []string{"a", "b"} {
		c, err := config.Load(filepath.Join("meshfed", "mesh-"+mesh+".yaml"))
		require.NoError(t, err, mesh)
		b, err := os.ReadFile(filepath.Join("meshfed", "services-"+mesh+".yaml"))
		require.NoError(t, err)
		_, err = file.Parse(b, "services-"+mesh+".yaml")
		require.NoError(t, err, mesh)
		require.Equal(t, "services-"+mesh+".yaml", filepath.Base(c.Exports.File))
	}
}

// requireMeshSideEgress checks that mesh m's egress gateway binds its
// address on the mesh's network only, and serves that network's subnet
// only: it is not an open proxy for the federation network.
func requireMeshSideEgress(t *testing.T, c composeFile, m, listen string, sources []string) {
	t.Helper()
	egress := c.Services["egress-"+m]
	require.Equal(t, listen, egress.Networks["mesh-"+m].IPv4Address, "egress-%s binds its fixed address on mesh-%s", m, m)
	var subnet struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	}
	raw, err := yaml.Marshal(c.Networks["mesh-"+m])
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &subnet))
	require.Len(t, subnet.IPAM.Config, 1, "mesh-%s has a fixed subnet", m)
	require.Equal(t, []string{subnet.IPAM.Config[0].Subnet}, sources, "egress-%s serves mesh-%s only", m, m)
	prefix := netip.MustParsePrefix(subnet.IPAM.Config[0].Subnet)
	require.True(t, prefix.Contains(netip.MustParseAddr(listen)), "%s is in mesh-%s's subnet %s", listen, m, prefix)
}
