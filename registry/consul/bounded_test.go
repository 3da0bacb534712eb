package consul

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry/consul/consultest"
)

// fatMeta is as much service meta as Consul takes for one instance: 64
// pairs of a 128-byte key and a 512-byte value, some 40 KB.
func fatMeta(protocol string) map[string]string {
	m := map[string]string{MetaProtocol: protocol}
	for i := range 63 {
		m[fmt.Sprintf("k%03d-%s", i, strings.Repeat("k", 123))] = strings.Repeat("v", 512)
	}
	return m
}

// registerFat registers n instances of service name, each with fatMeta.
func registerFat(t *testing.T, c *api.Client, name string, n int, protocol string) {
	t.Helper()
	for i := range n {
		register(t, c, &api.AgentServiceRegistration{ID: fmt.Sprintf("%s-%d", name, i), Name: name, Address: fmt.Sprintf("10.0.7.%d", i+1), Port: 8080,
			Tags: []string{"meshfed-export"}, Meta: fatMeta(protocol)})
	}
}

// allocated runs fn and returns what the process allocated meanwhile.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A service whose answer is over export.maxAnswerBytes costs the agent no
// more than the bound to refuse: 30 instances with all the meta Consul
// takes answer some 1.3 MB, and the source reads at most 64 KiB of it.
func TestSourceRefusesAnAnswerOverTheBound(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	registerFat(t, c, "fat", 30, "http")
	cfg := func(max int64) Config {
		return exportConfig(a, ExportConfig{Tag: "meshfed-export", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example", MaxAnswerBytes: max})
	}
	// The answer, as the source reads it.
	resp, err := http.Get("http://" + a.HTTPAddr + "/v1/health/service/fat?passing=1")
	require.NoError(t, err)
	answer, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())

	var unbounded, bounded uint64
	var runErr error
	src, err := NewSource(cfg(maxAnswerBytes), zap.NewNop())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan []model.Export, 1)
	unbounded = allocated(func() {
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, func(s []model.Export) { got <- s; cancel() }) }()
		runErr = <-done
	})
	require.NoError(t, runErr)
	require.Len(t, (<-got)[0].Ports[0].Endpoints, 30)

	src, err = NewSource(cfg(minAnswerBytes), zap.NewNop())
	require.NoError(t, err)
	bounded = allocated(func() { runErr = src.Run(context.Background(), func([]model.Export) { t.Fatal("update") }) })
	require.ErrorIs(t, runErr, ErrAnswerTooLarge)
	require.EqualError(t, runErr, `consul: reading the health of service "fat": consul answered GET "/v1/health/service/fat" with more than that, over export.maxAnswerBytes (65536 bytes)`)
	t.Logf("an answer of %d bytes: reading it allocated %d bytes; refusing it at 64 KiB, %d bytes", len(answer), unbounded, bounded)
	require.Greater(t, len(answer), 1<<20)
	require.Greater(t, unbounded, uint64(len(answer)))
	require.Less(t, bounded, uint64(512<<10))
}

// While the source runs, a service that grows over the bound keeps its
// last export and says why in the status; a service whose many instances
// share a problem is logged in one short line, escaped.
func TestSourceKeepsTheLastStateOfAServiceOverTheBound(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	registerFat(t, c, "fat", 1, "http")
	for i := range 10 {
		register(t, c, &api.AgentServiceRegistration{ID: fmt.Sprintf("odd-%d", i), Name: "odd", Address: fmt.Sprintf("10.0.9.%d", i+1), Port: 8080,
			Tags: []string{"meshfed-export"}, Meta: map[string]string{MetaProtocol: strings.Repeat("\x1b[31mnot-a-protocol", 26)}})
	}
	register(t, c, &api.AgentServiceRegistration{ID: "small-1", Name: "small", Address: "10.0.8.1", Port: 8080, Tags: []string{"meshfed-export"}})
	core, logs := observer.New(zapcore.DebugLevel)
	src, err := NewSource(exportConfig(a, ExportConfig{Tag: "meshfed-export", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example", MaxAnswerBytes: minAnswerBytes}), zap.New(core))
	require.NoError(t, err)
	r := &runningSource{t: t, updates: make(chan []model.Export, 64), src: src}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(s []model.Export) { r.updates <- s }) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	r.until("fat and small", func(s []model.Export) bool { return len(endpoints(s, "fat")) == 1 && len(endpoints(s, "small")) == 1 })

	registerFat(t, c, "fat", 3, "http") // 3 instances: over 64 KiB
	require.Eventually(t, func() bool {
		err := src.Status().Err
		return err != nil && strings.Contains(err.Error(), "over export.maxAnswerBytes")
	}, wait, 20*time.Millisecond)
	require.ErrorContains(t, src.Status().Err, `consul query health of service "fat": `)
	register(t, c, &api.AgentServiceRegistration{ID: "small-2", Name: "small", Address: "10.0.8.2", Port: 8080, Tags: []string{"meshfed-export"}})
	set := r.until("small grows", func(s []model.Export) bool { return len(endpoints(s, "small")) == 2 })
	require.Equal(t, []string{"10.0.7.1"}, endpoints(set, "fat"), "fat's last state stays")

	problem := src.Status().Skipped["odd"]
	require.True(t, strings.HasSuffix(problem, "; and 8 more"), problem)
	require.NotContains(t, problem, "\x1b")
	for _, e := range logs.All() {
		line, err := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()).EncodeEntry(e.Entry, e.Context)
		require.NoError(t, err)
		require.Less(t, line.Len(), 2048, "%s", e.Message)
		require.NotContains(t, line.String(), "\x1b")
	}
	require.NotZero(t, logs.FilterMessage("consul service not exported as it stands").Len())
	require.NotZero(t, logs.FilterMessage("consul query failed; the last result stays").Len())
}
