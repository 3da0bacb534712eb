package catalog

import (
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/store"
)

// Restore loads the imports kept in the store, as they were before a
// restart: stale marks included. Records of peers that are no longer
// configured are dropped from the store; records that no longer pass
// validation (the configured policy may have tightened) are dropped with a
// warning. Call it after SetPeers and before anything subscribes.
func (c *Catalog) Restore(records []store.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	dropped := map[string]bool{}
	for _, r := range records {
		p, ok := c.peers[r.Peer]
		if !ok {
			if !dropped[r.Peer] {
				dropped[r.Peer] = true
				if err := c.store.DeletePeer(r.Peer); err != nil {
					return err
				}
			}
			continue
		}
		svc, err := decode(r.Service, p.Policy)
		if err != nil {
			c.log.Warn("dropping stored import that no longer validates",
				zap.String("peer", r.Peer), zap.String("resourceId", r.ResourceID), zap.Error(err))
			if err := c.store.DeleteImport(r.Peer, r.ResourceID); err != nil {
				return err
			}
			continue
		}
		local := p.LocalName(svc)
		if owner, taken := c.owners[local]; taken {
			c.log.Warn("dropping stored import whose name is taken",
				zap.String("peer", r.Peer), zap.String("resourceId", r.ResourceID), zap.String("fqdn", local), zap.String("owner", owner.peer))
			continue
		}
		if c.imports[r.Peer] == nil {
			c.imports[r.Peer] = map[string]*model.Import{}
		}
		c.imports[r.Peer][r.ResourceID] = &model.Import{Peer: r.Peer, ResourceID: r.ResourceID, LocalFQDN: local, Service: svc, StaleSince: r.StaleSince}
		c.owners[local] = importKey{r.Peer, r.ResourceID}
		c.notifyLocked(model.Key{Kind: model.KindImport, Peer: r.Peer, ID: r.ResourceID})
	}
	return nil
}

func decode(raw []byte, p validate.Policy) (model.Service, error) {
	var fs typespb.FederatedService
	if err := proto.Unmarshal(raw, &fs); err != nil {
		return model.Service{}, err
	}
	return validate.Service(&fs, p)
}
