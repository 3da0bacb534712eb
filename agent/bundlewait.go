package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// DefaultBundleWait bounds how long the gateways' first configuration
// waits for peers' trust bundles that come from bundle endpoints and have
// never loaded (no bootstrap or saved bundle). Until then a gateway
// reconnecting to a restarted agent keeps what it has, rather than losing
// the clusters of imports restored from the store; past it, the agent
// serves what it can.
const DefaultBundleWait = 30 * time.Second

// missingPeers names the peers whose trust bundle has never loaded, with
// their trust domains, sorted: "mesh-a (mesh-a.example)".
func (a *Agent) missingPeers() []string {
	var out []string
	for _, td := range a.bundles.Missing() {
		var names []string
		for _, p := range a.cfg.Peers {
			if p.TrustDomain == td.Name() {
				names = append(names, p.Name)
			}
		}
		if len(names) == 0 {
			names = []string{"no peer"}
		}
		out = append(out, fmt.Sprintf("%s (%s)", strings.Join(names, ", "), td.Name()))
	}
	return out
}

// startGateways builds the gateways' first configuration once every
// configured trust bundle has loaded, or wait has passed.
func (a *Agent) startGateways(ctx context.Context, wait time.Duration) error {
	if missing := a.missingPeers(); len(missing) > 0 {
		a.log.Info("waiting for peers' trust bundles before configuring the gateways",
			zap.Strings("peers", missing), zap.Duration("at_most", wait))
		changed, cancel := a.Identity.Subscribe()
		defer cancel()
		timer := time.NewTimer(wait)
		defer timer.Stop()
	wait:
		for len(a.missingPeers()) > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			case <-timer.C:
				a.log.Warn("configuring the gateways without some peers' trust bundles; their imports and the exports they consume wait for them",
					zap.Strings("peers", a.missingPeers()), zap.Duration("waited", wait))
				break wait
			}
		}
	}
	if err := a.Runner.Start(); err != nil {
		return err
	}
	close(a.configured)
	return nil
}
