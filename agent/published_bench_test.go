package agent

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/dnsserver"
	"github.com/meshfed/meshfed/registry/consul"
	"github.com/meshfed/meshfed/registry/consul/consultest"
	"github.com/meshfed/meshfed/snapshot"
)

// BenchmarkPublishedChange is the agent's work outside xDS for one change
// of an import the gateways serve, with DNS and a real Consul agent as the
// registry sink: the DNS table and the sink take the change, never the
// catalog, so what a change costs does not grow with the imports served.
// Compare cpu-ns/op of imports=10000 with imports=1000 (it includes the
// Consul client's work, not Consul's).
func BenchmarkPublishedChange(b *testing.B) {
	c := consultest.Start(b)
	ctx := context.Background()
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("imports=%d", n), func(b *testing.B) {
			sk, err := consul.NewSink(consul.Config{Address: c.HTTPAddr, Import: &consul.ImportConfig{}}, zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			dns, err := dnsserver.New(dnsserver.Config{Listen: "127.0.0.1:0", Log: zap.NewNop(), Registerer: prometheus.NewRegistry()})
			if err != nil {
				b.Fatal(err)
			}
			p := newPublished("127.0.0.1", zap.NewNop())
			p.dns = dns
			all := make([]snapshot.ServedImport, n)
			for i := range all {
				all[i] = served(fmt.Sprintf("svc-%05d", i), "tcp")
			}
			p.apply(all)
			p.take()
			start := time.Now()
			if err := sk.Sync(ctx, p.all()); err != nil {
				b.Fatal(err)
			}
			b.Logf("%d imports published in Consul in %v", n, time.Since(start).Round(time.Millisecond))

			cpu0 := cpuTime(b)
			b.ResetTimer()
			for i := range b.N {
				// Another port for one instance: a new DNS record and a
				// new Consul registration of that service only.
				ch := served(fmt.Sprintf("svc-%05d", i%n), "tcp")
				ch.Ports["tcp"] = 30000 + uint32(i%20000)
				p.apply([]snapshot.ServedImport{ch})
				set, gone, _ := p.take()
				if err := sk.Apply(ctx, set, gone); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
