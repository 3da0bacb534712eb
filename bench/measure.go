package bench

import (
	"math"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// usage is a reading of what this process spent.
type usage struct {
	wall   time.Time
	cpu    time.Duration
	allocs uint64
}

func readUsage() usage {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{wall: time.Now(), cpu: cpuTime(), allocs: ms.Mallocs}
}

// cpuTime is the CPU time (user and system) this process used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail with RUSAGE_SELF
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heap collects garbage and returns the live heap.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Latency summarizes the latencies of a workload, in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50Ms"`
	P99   float64 `json:"p99Ms"`
	Max   float64 `json:"maxMs"`
	// TimedOut changes never reached every gateway within the wait limit.
	TimedOut int `json:"timedOut,omitempty"`
}

func summarize(ds []time.Duration, timedOut int) Latency {
	l := Latency{Count: len(ds), TimedOut: timedOut}
	msOf := make([]float64, len(ds))
	for i, d := range ds {
		msOf[i] = ms(d)
	}
	s := spreadOf(msOf)
	l.P50, l.P99, l.Max = s.P50, s.P99, s.Max
	return l
}

// Spread is the median, the 99th percentile (nearest rank) and the largest
// of a series of figures.
type Spread struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func spreadOf(vs []float64) Spread {
	if len(vs) == 0 {
		return Spread{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return Spread{P50: quantile(s, 0.50), P99: quantile(s, 0.99), Max: s[len(s)-1]}
}

// quantile of sorted s, nearest rank.
func quantile(s []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Cost is what a workload cost the control plane's process, per update.
type Cost struct {
	Updates int `json:"updates"`
	// CPUMs is process CPU time (user and system) per update, in ms.
	CPUMs float64 `json:"cpuMsPerUpdate"`
	// Allocs is heap allocations per update.
	Allocs float64 `json:"allocsPerUpdate"`
	// WireBytes per update per gateway, read from the connections.
	WireBytes float64 `json:"wireBytesPerUpdatePerGateway"`
	// GatewaysCPUMs is the CPU time per update of the process running the
	// gateways (decoding, ACKing), which shares the machine.
	GatewaysCPUMs float64 `json:"gatewaysCpuMsPerUpdate"`
}

func cost(before, after usage, updates int, g0, g1 fleetStats, gateways int) Cost {
	if updates == 0 {
		return Cost{}
	}
	n := float64(updates)
	return Cost{
		Updates:       updates,
		CPUMs:         float64(after.cpu-before.cpu) / float64(time.Millisecond) / n,
		Allocs:        float64(after.allocs-before.allocs) / n,
		WireBytes:     float64(g1.WireBytes-g0.WireBytes) / n / float64(max(gateways, 1)),
		GatewaysCPUMs: (g1.CPUMs - g0.CPUMs) / n,
	}
}

func (s spent) cost(updates, gateways int) Cost {
	if updates == 0 {
		return Cost{}
	}
	n := float64(updates)
	return Cost{
		Updates:       updates,
		CPUMs:         float64(s.cpu) / float64(time.Millisecond) / n,
		Allocs:        float64(s.allocs) / n,
		WireBytes:     float64(s.wire) / n / float64(max(gateways, 1)),
		GatewaysCPUMs: s.gatewaysCPU / n,
	}
}
