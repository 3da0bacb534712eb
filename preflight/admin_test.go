package preflight

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The admin API's token file is read as the agent reads it: missing or
// short, it is an error; readable by others, a warning.
func TestAdminTokenFile(t *testing.T) {
	const beyond = "admin: {listen: 0.0.0.0:19100, allowNonLoopback: true, tokenFile: admin.token}"
	for _, tc := range []struct {
		name  string
		token string
		mode  os.FileMode
		want  []string
	}{
		{"good", strings.Repeat("t", 32), 0o600, []string{}},
		{"missing", "", 0, []string{"{dir}/meshfed.yaml:15: error: admin.tokenFile: open {dir}/admin.token: no such file or directory"}},
		{"short", "s3cret\n", 0o600, []string{"{dir}/meshfed.yaml:15: error: admin.tokenFile: {dir}/admin.token holds 6 bytes; a token needs at least 32 (openssl rand -hex 32 > {dir}/admin.token)"}},
		{"readable by others", strings.Repeat("t", 32), 0o644, []string{"{dir}/meshfed.yaml:15: warning: admin.tokenFile: {dir}/admin.token may be read by other users (mode 0644): chmod 600 it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := meshDir(t, "admin: {listen: 127.0.0.1:19100}", beyond)
			if tc.mode != 0 {
				path := filepath.Join(dir, "admin.token")
				require.NoError(t, os.WriteFile(path, []byte(tc.token), tc.mode))
				require.NoError(t, os.Chmod(path, tc.mode))
			}
			require.Equal(t, tc.want, withoutTimes(findings(t, dir, Options{Now: time.Now()})))
		})
	}
}
