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
// serves every gateway, with the bundles they were last served for the
// peers whose bundle is still missing (heldBundles).
const DefaultBundleWait = 30 * time.Second

// missingPeers names the peers whose trust bundle has never loaded, with
// their trust domains, sorted: "mesh-a (mesh-a.example)".
func (a *Agent) missingPeers() []string {
	var out []string
	for _, td := range a.creds.bundles.Missing() {
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
		changed, cancel := a.creds.all.Subscribe()
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
				a.holdMissing(wait)
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

// holdMissing serves the gateways, for each trust bundle still missing at
// the end of the wait, the bundle they were last served: the imports and
// exports that depend on it stay as they were.
func (a *Agent) holdMissing(waited time.Duration) {
	var tds []string
	for _, td := range a.creds.bundles.Missing() {
		tds = append(tds, td.Name())
	}
	none := a.held.hold(tds)
	if held := len(tds) - len(none); held > 0 {
		a.log.Warn("configuring the gateways without some peers' trust bundles; the imports and exports that depend on them stay as the gateways last had them, with the bundles they were last served, until they load",
			zap.Strings("peers", a.missingPeers()), zap.Duration("waited", waited))
	}
	if len(none) > 0 {
		a.log.Warn("configuring the gateways without some peers' trust bundles, none of which was ever served to them; their imports and the exports they consume wait for them",
			zap.Strings("trust_domains", none), zap.Duration("waited", waited))
	}
}
