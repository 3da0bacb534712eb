package cache

import (
	"slices"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Envoy warms a changed EDS cluster as a new cluster that waits for its
// ClusterLoadAssignment to be sent again; until it is (15 s by default, the
// EDS initial_fetch_timeout) the old cluster serves and every later cluster
// update waits behind it. So an assignment's version covers its cluster's
// version: a cluster change gives the assignment a new version, and it is
// sent right after the cluster (clusters rank before endpoints).

// edsName is the name of the assignment an EDS cluster loads, "" for a
// cluster of another discovery type.
func edsName(m proto.Message) string {
	c, ok := m.(*cluster.Cluster)
	if !ok || c.GetType() != cluster.Cluster_EDS {
		return ""
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// edsLinks follows which assignment each EDS cluster of a role loads.
type edsLinks struct {
	// of is the assignment name of each EDS cluster; version the version
	// of the cluster that loads each assignment.
	of      map[string]string
	version map[string]string
}

func newEDSLinks() edsLinks {
	return edsLinks{of: map[string]string{}, version: map[string]string{}}
}

// link gives the assignments of batch the versions that cover their
// clusters, and returns the stored assignments whose cluster changed, with
// their new versions, to be committed with the batch.
func (l edsLinks) link(batch []prepared, endpoints *typeState) []prepared {
	touched := map[string]bool{}
	for _, p := range batch {
		if p.typeURL != resource.ClusterType {
			continue
		}
		old, had := l.of[p.name]
		if had && (p.res == nil || old != p.eds) {
			delete(l.of, p.name)
			delete(l.version, old)
			touched[old] = true
		}
		if p.res == nil || p.eds == "" {
			continue
		}
		l.of[p.name] = p.eds
		if l.version[p.eds] != p.res.Version {
			l.version[p.eds] = p.res.Version
			touched[p.eds] = true
		}
	}
	for _, p := range batch {
		if p.typeURL == resource.EndpointType {
			delete(touched, p.name)
			if p.res != nil {
				p.res.Version = linkedVersion(p.own, l.version[p.name])
			}
		}
	}
	var extra []prepared
	for _, name := range sortedKeys(touched) {
		if endpoints == nil {
			break
		}
		stored, ok := endpoints.entries[name]
		if !ok {
			continue
		}
		own := contentVersion(stored.GetResource().GetValue())
		extra = append(extra, prepared{
			typeURL: resource.EndpointType,
			name:    name,
			own:     own,
			res:     &discovery.Resource{Name: name, Version: linkedVersion(own, l.version[name]), Resource: stored.GetResource()},
		})
	}
	return extra
}

// linkedVersion is the version of an assignment whose own content is own,
// loaded by a cluster at clusterVersion ("" when there is none).
func linkedVersion(own, clusterVersion string) string {
	if clusterVersion == "" {
		return own
	}
	return contentVersion([]byte(own + ":" + clusterVersion))
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
