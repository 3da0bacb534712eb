package hostname

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestProblem(t *testing.T) {
	for _, c := range []struct {
		name string
		rule Rule
		want string
	}{
		{"orders.mesh-a.example", FQDN, ""},
		{"Orders.mesh-a.example", FQDN, "contains an upper-case letter"},
		{"orders", FQDN, "has fewer than two labels"},
		{"localhost", LocalAddress, ""},
		{"localhost", PeerAddress, "has fewer than two labels"},
		{"GW.mesh-b.example", PeerAddress, ""},
		{"outbound_.8080_._.orders.mesh-a.example", SNI, ""},
		{"outbound_.8080_._.orders.mesh-a.example", FQDN, "contains a character other than a letter, digit, '-' or '.'"},
		{"*.mesh-a.example", SNI, "contains a wildcard"},
		{"", Label, "empty"},
		{"a..b", FQDN, "has an empty label"},
		{"a.b.", FQDN, "ends with a dot"},
		{"-a.b", FQDN, "has a label that starts or ends with '-'"},
		{"10.0.0.1", PeerAddress, "has an all-numeric top-level label"},
		{strings.Repeat("a", 64) + ".example", FQDN, "has a label longer than 63 bytes"},
		{strings.Repeat("a.", 127) + "ab", FQDN, "longer than 253 bytes"},
	} {
		require.Equal(t, c.want, Problem(c.name, c.rule), "%q", c.name)
	}
}
