package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/session"
	"github.com/meshfed/meshfed/federation/wire"
)

// A session takes every bound from its caller and refuses one it cannot
// run with, naming it.
func TestRunRefusesWhatItCannotRunWith(t *testing.T) {
	valid := func() session.Options {
		return session.Options{
			Peer: "mesh-b", Catalog: catalog.New(nil, zap.NewNop()), Ingress: func() wire.Ingress { return wire.Ingress{} },
			Remote: func() (session.Capabilities, error) { return session.Capabilities{}, nil }, Log: zap.NewNop(),
			MaxBatch: 256, Local: session.Capabilities{ServicesPerResponse: 256},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*session.Options)
		want   string
	}{
		{"no MaxBatch", func(o *session.Options) { o.MaxBatch = 0 }, "session: maxBatch 0: a transaction holds at least one service"},
		{"negative BatchDelay", func(o *session.Options) { o.BatchDelay = -time.Millisecond }, "session: batchDelay -1ms is negative (0 never waits)"},
		{"more services per response than a transaction", func(o *session.Options) { o.MaxBatch = 100 },
			"session: servicesPerResponse 256 is out of range 0-100 (maxBatch): a response's services are stored in one transaction"},
		{"negative grace", func(o *session.Options) { o.Grace = -time.Second }, "session: grace -1s is negative"},
		{"window over the bound", func(o *session.Options) { o.Local.Window = 5000 }, "session: window 5000 is out of range 0-4096"},
		{"no catalog", func(o *session.Options) { o.Catalog = nil }, "session: no catalog"},
		{"no logger", func(o *session.Options) { o.Log = nil }, "session: no logger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.change(&o)
			err := session.Run(context.Background(), &pipe{}, o)
			require.ErrorContains(t, err, tc.want)
		})
	}
	require.NoError(t, session.CheckLimits(256, 0, 256), "0 never waits")
}
