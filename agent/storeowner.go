package agent

import (
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/preflight"
)

// ownStore records, beside the store, that this agent of ConfigPath holds
// it, so that meshfed check of that configuration takes the lock for the
// running agent's; the returned func takes the record away.
func (a *Agent) ownStore() func() {
	if a.ConfigPath == "" {
		return func() {}
	}
	remove, err := preflight.WriteStoreOwner(a.cfg.Store.Path, a.ConfigPath)
	if err != nil {
		a.log.Warn("the store's owner file is not written; meshfed check of this configuration will take the store's lock for another process's", zap.Error(err))
		return func() {}
	}
	return remove
}
