package runner

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAllocatorDropsWhatItCannotKeep(t *testing.T) {
	kv := newMemKV()
	kv.m = map[string]string{
		"a": "21000",
		"b": "21000", // the same port twice: the second in key order is given anew
		"c": "9000",  // outside the range, which changed
		"d": "garbage",
		"e": "21002",
	}
	a, err := NewAllocator(kv, PortRange{From: 21000, To: 21002})
	require.NoError(t, err)
	require.Equal(t, map[string]uint32{"a": 21000, "e": 21002}, a.Ports())
	require.Equal(t, map[string]string{"a": "21000", "e": "21002"}, kv.content())

	_, err = NewAllocator(kv, PortRange{From: 21003, To: 21002})
	require.EqualError(t, err, "gateways.egress.ports: 21003-21002 is not a port range")
}

func TestAllocatorKeepsOnlySettledPorts(t *testing.T) {
	kv := newMemKV()
	a, err := NewAllocator(kv, PortRange{From: 21000, To: 21001})
	require.NoError(t, err)

	got, err := a.Propose([]string{"b", "a"})
	require.NoError(t, err)
	require.Equal(t, map[string]uint32{"a": 21000, "b": 21001}, got, "sorted keys take ports in order")
	_, err = a.Propose([]string{"c"})
	var full *ErrRangeFull
	require.ErrorAs(t, err, &full)
	require.EqualError(t, err, `gateways.egress.ports: range 21000-21001 is full; 1 dedicated listeners (first "c") have no port`)

	// Only a is held: b's proposal is released and never written.
	require.NoError(t, a.Settle([]string{"a"}, nil))
	require.Equal(t, map[string]uint32{"a": 21000}, a.Ports())
	require.Equal(t, map[string]string{"a": "21000"}, kv.content())
	got, err = a.Propose([]string{"c"})
	require.NoError(t, err)
	require.Equal(t, map[string]uint32{"c": 21001}, got)
	require.NoError(t, a.Settle(nil, nil))

	// Prune frees what no live import holds.
	require.NoError(t, a.Prune([]string{"z"}))
	require.Empty(t, a.Ports())
	require.Empty(t, kv.content())
}

func TestAllocatorWriteFailureIsRetried(t *testing.T) {
	kv := newMemKV()
	a, err := NewAllocator(kv, PortRange{From: 21000, To: 21001})
	require.NoError(t, err)
	_, err = a.Propose([]string{"a"})
	require.NoError(t, err)

	kv.fail = errDiskFull
	require.EqualError(t, a.Settle([]string{"a"}, nil), "storing 1 egress ports: disk full")
	require.Equal(t, map[string]uint32{"a": 21000}, a.Ports(), "the gateway serves the port: memory keeps it")
	require.Empty(t, kv.content())
	got, err := a.Propose([]string{"b"})
	require.NoError(t, err)
	require.Equal(t, map[string]uint32{"b": 21001}, got, "a's port is never given twice")

	require.NoError(t, a.Settle(nil, nil))
	require.Equal(t, map[string]string{"a": "21000"}, kv.content(), "the next settle writes what failed")
}
