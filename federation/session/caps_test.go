package session_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/meshfed/meshfed/federation/session"
)

// What a peer advertises is read within bounds: a value out of range, or
// malformed, is left out, which only makes the stream more conservative.
func TestParseCapabilities(t *testing.T) {
	for _, tc := range []struct {
		advertised string
		want       session.Capabilities
	}{
		{"", session.Capabilities{}},
		{"sync-complete,window=64,services-per-response=256",
			session.Capabilities{SyncComplete: true, Window: 64, ServicesPerResponse: 256}},
		{" services-per-response=4096 , window=4096", session.Capabilities{Window: 4096, ServicesPerResponse: 4096}},
		{"services-per-response=4097,window=4097", session.Capabilities{}},
		{"services-per-response=1,window=1", session.Capabilities{}},
		{"services-per-response=-3,window=0x10,services-per-response=", session.Capabilities{}},
		{"services-per-response-extra=8,future-thing=9", session.Capabilities{}},
	} {
		t.Run(tc.advertised, func(t *testing.T) {
			require.Equal(t, tc.want, session.ParseCapabilities(metadata.Pairs(session.CapabilitiesKey, tc.advertised)))
		})
	}
}

// Each extension is negotiated only when both sides advertise it, to the
// smaller of their values, and is advertised back as it was read.
func TestNegotiateTakesTheSmaller(t *testing.T) {
	local := session.Capabilities{SyncComplete: true, Window: 64, ServicesPerResponse: 256}
	require.Equal(t, session.Capabilities{SyncComplete: true, Window: 8, ServicesPerResponse: 16},
		session.Negotiate(local, session.Capabilities{SyncComplete: true, Window: 8, ServicesPerResponse: 16}))
	require.Equal(t, session.Capabilities{Window: 1, ServicesPerResponse: 1}, session.Negotiate(local, session.Capabilities{}))
	require.Equal(t, local, session.ParseCapabilities(local.MD()))
}
