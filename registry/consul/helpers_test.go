package consul

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/model"
)

// wait bounds every wait for Consul: generous, since only a broken run
// reaches it.
const wait = 30 * time.Second

type runningSource struct {
	t       *testing.T
	updates chan []model.Export
	src     *Source
	stop    func() // ends Run and waits for it
}

// runSource runs a Source until the test ends.
func runSource(t *testing.T, cfg Config) *runningSource {
	t.Helper()
	src, err := NewSource(cfg, zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)))
	require.NoError(t, err)
	r := &runningSource{t: t, updates: make(chan []model.Export, 64), src: src}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(s []model.Export) {
			select {
			case r.updates <- s:
			case <-ctx.Done():
			}
		})
	}()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(r.stop)
	return r
}

// until returns the first set, now or to come, for which ok holds.
func (r *runningSource) until(what string, ok func([]model.Export) bool) []model.Export {
	r.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case s := <-r.updates:
			if ok(s) {
				return s
			}
		case <-deadline:
			r.t.Fatalf("no update with %s", what)
		}
	}
}

func (r *runningSource) noUpdate() {
	r.t.Helper()
	select {
	case s := <-r.updates:
		r.t.Fatalf("unexpected update %+v", s)
	default:
	}
}

func find(set []model.Export, name string) (model.Export, bool) {
	for _, e := range set {
		if e.Name == name {
			return e, true
		}
	}
	return model.Export{}, false
}

// endpoints lists the addresses of the first port of service name, or
// nil when the service is not in set.
func endpoints(set []model.Export, name string) []string {
	e, ok := find(set, name)
	if !ok {
		return nil
	}
	var out []string
	for _, ep := range e.Ports[0].Endpoints {
		out = append(out, ep.Address)
	}
	return out
}

func register(t *testing.T, c *api.Client, r *api.AgentServiceRegistration) {
	t.Helper()
	require.NoError(t, c.Agent().ServiceRegister(r))
}

// ttlCheck is a TTL check that starts passing; the test sets its state.
func ttlCheck() *api.AgentServiceCheck {
	return &api.AgentServiceCheck{TTL: "1h", Status: api.HealthPassing}
}
