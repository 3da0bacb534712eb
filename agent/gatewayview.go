package agent

import (
	"context"
	"fmt"
	"slices"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/xds"
)

// The states of one type on a gateway's stream.
const (
	// Synced: the gateway ACKed what the agent wants it to hold.
	Synced = "SYNCED"
	// Stale: the gateway has not (yet) ACKed what the agent wants it to
	// hold: a response is on its way, or unanswered.
	Stale = "STALE"
	// Nacked: the gateway's last answer was a NACK; it keeps what it held.
	Nacked = "NACKED"
	// Unserved: the node id is not one of this agent's gateways, so it is
	// sent nothing.
	Unserved = "UNSERVED"
)

// GatewayView is one connected gateway stream, as /api/v1/gateways and
// the status show it.
type GatewayView struct {
	xds.Gateway
	Types []GatewayType `json:"types"`
}

// GatewayType is the state of one type URL on a gateway's stream: what the
// xDS server saw, and what the agent wants the gateway to hold.
type GatewayType struct {
	xds.TypeStatus
	// State is SYNCED, STALE, NACKED or UNSERVED.
	State string `json:"state"`
	// WantedVersion is the version of the type the agent serves the
	// gateway's role now: a state-of-the-world version_info, or a delta
	// system_version_info.
	WantedVersion string `json:"wantedVersion,omitempty"`
}

// Gateways answers /api/v1/gateways.
func (a *Agent) Gateways(context.Context) (any, error) {
	return a.gatewayViews(), nil
}

func (a *Agent) gatewayViews() []GatewayView {
	clients := a.XDS.Clients()
	out := make([]GatewayView, 0, len(clients))
	for _, c := range clients {
		out = append(out, a.gatewayView(c))
	}
	return out
}

func (a *Agent) gatewayView(c xds.ClientStatus) GatewayView {
	v := GatewayView{Gateway: c.Gateway, Types: make([]GatewayType, 0, len(c.Types))}
	role, served := a.nodeRole(c.NodeID)
	for _, t := range c.Types {
		gt := GatewayType{TypeStatus: t}
		if served {
			if c.Stream == "delta" {
				gt.WantedVersion = a.Cache.DeltaVersion(role, t.TypeURL)
			} else {
				gt.WantedVersion = a.Cache.Version(role, t.TypeURL)
			}
		}
		gt.State = typeState(served, wildcard(t.TypeURL), gt)
		v.Types = append(v.Types, gt)
	}
	return v
}

// wildcard reports whether a gateway subscribes to every resource of the
// type (clusters, listeners), so that every new version is sent to it.
func wildcard(typeURL string) bool {
	return typeURL == resource.ClusterType || typeURL == resource.ListenerType
}

// typeState says where a type of a stream stands. A NACK newer than the
// last ACK is NACKED. A type the gateway holds in full (clusters,
// listeners) is SYNCED when its ACKed version is the wanted one. A type
// it subscribes to by name (endpoints, routes, secrets) is sent a new
// version only when a resource it named changed, so it is SYNCED when it
// ACKed the last response it was sent: the wanted version may be newer
// for resources it does not use.
func typeState(served, all bool, t GatewayType) string {
	switch {
	case !served:
		return Unserved
	case t.LastNack != nil && !t.LastNack.At.Before(t.AckedAt):
		return Nacked
	case t.AckedVersion == "":
		return Stale
	case all && t.AckedVersion == t.WantedVersion:
		return Synced
	case !all && t.AckedVersion == t.SentVersion:
		return Synced
	}
	return Stale
}

// nodeRole is the role of a node id: the cache serves it that role's
// resources, and the gateway views show them.
func (a *Agent) nodeRole(id string) (model.Role, bool) {
	g := a.cfg.Gateways
	switch {
	case slices.Contains(g.Egress.NodeIDs, id):
		return model.Egress, true
	case slices.Contains(g.Ingress.NodeIDs, id):
		return model.Ingress, true
	}
	return "", false
}

// dumpTypes are the types of a config dump, in the order of Envoy's, by
// the name the type query parameter gives them.
var dumpTypes = []struct{ name, typeURL string }{
	{"clusters", resource.ClusterType},
	{"endpoints", resource.EndpointType},
	{"listeners", resource.ListenerType},
	{"scopedRoutes", resource.ScopedRouteType},
	{"secrets", resource.SecretType},
}

// ConfigDump answers /api/v1/gateways/{node}/config_dump: what the agent
// serves the connected gateway of that node id, as Envoy's /config_dump
// shows its dynamic resources (?include_eds), with proto field names as
// Envoy writes them. Private keys are "[redacted]", as Envoy shows them; a
// gateway on a plaintext channel is never sent one, so its dump holds no
// such secret. On a delta stream each resource has its own version; on
// state of the world, the version of its type. typ, when set, keeps one
// part: clusters, endpoints, listeners, scopedRoutes or secrets.
func (a *Agent) ConfigDump(_ context.Context, node, typ string) (any, error) {
	var types []string
	for _, t := range dumpTypes {
		if typ == "" || typ == t.name {
			types = append(types, t.typeURL)
		}
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("type: %q is not clusters, endpoints, listeners, scopedRoutes or secrets: %w", typ, admin.ErrBadRequest)
	}
	var conn *xds.ClientStatus
	for _, c := range a.XDS.Clients() {
		if c.NodeID == node {
			conn = &c
			break
		}
	}
	if conn == nil {
		return nil, fmt.Errorf("no gateway with node id %q is connected: %w", node, admin.ErrNotFound)
	}
	role, ok := a.nodeRole(node)
	if !ok {
		return nil, fmt.Errorf("node id %q is not in gateways.egress.nodeIds or gateways.ingress.nodeIds: it is served nothing: %w", node, admin.ErrNotFound)
	}
	dump, err := a.configDump(role, types, conn.Stream == "delta", conn.Channel == string(xds.ChannelPlaintext))
	if err != nil {
		return nil, fmt.Errorf("config dump of %q: %w", node, err)
	}
	return protoJSON{dump}, nil
}

func (a *Agent) configDump(role model.Role, types []string, delta, keyless bool) (*adminv3.ConfigDump, error) {
	var (
		clusters  adminv3.ClustersConfigDump
		endpoints adminv3.EndpointsConfigDump
		listeners adminv3.ListenersConfigDump
		scopes    adminv3.ScopedRoutesConfigDump_DynamicScopedRouteConfigs
		secrets   adminv3.SecretsConfigDump
	)
	for _, typ := range types {
		typeVersion := a.Cache.Version(role, typ)
		for _, r := range a.Cache.Resources(role, typ) {
			version := typeVersion
			if delta {
				version = r.Version
			}
			switch typ {
			case resource.ClusterType:
				clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{VersionInfo: version, Cluster: r.Resource})
			case resource.EndpointType:
				endpoints.DynamicEndpointConfigs = append(endpoints.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{VersionInfo: version, EndpointConfig: r.Resource})
			case resource.ListenerType:
				listeners.DynamicListeners = append(listeners.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
					Name: r.Name, ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: version, Listener: r.Resource},
				})
			case resource.ScopedRouteType:
				// Envoy keeps the scopes of one scoped routes name
				// together, with the version of their last update.
				scopes.Name, scopes.VersionInfo = snapshot.EgressScopesName, typeVersion
				scopes.ScopedRouteConfigs = append(scopes.ScopedRouteConfigs, r.Resource)
			case resource.SecretType:
				s, hadKey, err := redacted(r.Resource)
				if err != nil {
					return nil, fmt.Errorf("secret %q: %w", r.Name, err)
				}
				if hadKey && keyless {
					continue
				}
				secrets.DynamicActiveSecrets = append(secrets.DynamicActiveSecrets, &adminv3.SecretsConfigDump_DynamicSecret{Name: r.Name, VersionInfo: version, Secret: s})
			}
		}
	}
	out := &adminv3.ConfigDump{}
	scoped := &adminv3.ScopedRoutesConfigDump{}
	if len(scopes.ScopedRouteConfigs) > 0 {
		scoped.DynamicScopedRouteConfigs = append(scoped.DynamicScopedRouteConfigs, &scopes)
	}
	for i, m := range []proto.Message{&clusters, &endpoints, &listeners, scoped, &secrets} {
		if !slices.Contains(types, dumpTypes[i].typeURL) {
			continue
		}
		b, err := anypb.New(m)
		if err != nil {
			return nil, err
		}
		out.Configs = append(out.Configs, b)
	}
	return out, nil
}

// redacted is a secret with its private key replaced by "[redacted]", and
// whether it had one. The cache's resource is shared and left alone.
func redacted(a *anypb.Any) (*anypb.Any, bool, error) {
	var s tlsv3.Secret
	if err := a.UnmarshalTo(&s); err != nil {
		return nil, false, err
	}
	c := s.GetTlsCertificate()
	if c.GetPrivateKey() == nil {
		return a, false, nil
	}
	c.PrivateKey = &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: "[redacted]"}}
	out, err := anypb.New(&s)
	return out, true, err
}

// protoJSON marshals a proto as Envoy writes it: proto field names, Any
// with its @type.
type protoJSON struct{ proto.Message }

func (p protoJSON) MarshalJSON() ([]byte, error) {
	return protojson.MarshalOptions{UseProtoNames: true}.Marshal(p.Message)
}
