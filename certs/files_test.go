package certs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/model"
)

// keyLines are the lines of a PEM key file that hold key material.
func keyLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	require.NotEmpty(t, out)
	return out
}

// Certificate and key files that are not what they claim to be: switched,
// a key where the certificate goes, cut in half, a pipe nobody writes,
// a device. Each is refused (a pipe or a device without hanging the
// reload), the last good SVID stays, and neither the error nor the log
// holds a byte of the key.
func TestSVIDFilesThatAreNotWhatTheyClaim(t *testing.T) {
	ca := newCA(t, tdA)
	dir := t.TempDir()
	agentID := mustID(t, tdA, "/meshfed/agent")
	require.NoError(t, ca.writeSVID(agentID, time.Hour, dir, "agent"))
	certFile, keyFile := filepath.Join(dir, "agent.pem"), filepath.Join(dir, "agent-key.pem")
	cert, err := os.ReadFile(certFile)
	require.NoError(t, err)
	key, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	secret := keyLines(t, keyFile)
	core, logs := observer.New(zapcore.DebugLevel)
	m := newMetrics(t)
	src, err := NewFileSVIDSource(FileSVIDConfig{Role: model.Agent, CertFile: certFile, KeyFile: keyFile, ID: agentID}, zap.New(core), m)
	require.NoError(t, err)
	defer src.Close()
	good, err := src.GetX509SVID()
	require.NoError(t, err)

	replace := func(path string, make func(tmp string)) {
		tmp := path + ".tmp"
		make(tmp)
		require.NoError(t, os.Rename(tmp, path))
	}
	content := func(b []byte) func(string) {
		return func(tmp string) { require.NoError(t, os.WriteFile(tmp, b, 0o600)) }
	}
	cases := []struct {
		name      string
		cert, key func(string)
		want      string
	}{
		{"switched", content(key), content(cert), "x509svid: certificate validation failed: no certificates found"},
		{"a key for the certificate", content(key), content(key), "x509svid: certificate validation failed: no certificates found"},
		{"a key cut in half", content(cert), content(key[:len(key)/2]), "x509svid: cannot parse PEM encoded private key: no PEM blocks found"},
		{"a pipe for the key", content(cert), func(tmp string) { require.NoError(t, syscall.Mkfifo(tmp, 0o600)) }, keyFile + " is a named pipe, not a regular file"},
		{"a device for the key", content(cert), func(tmp string) { require.NoError(t, os.Symlink("/dev/zero", tmp)) }, keyFile + " is a character device, not a regular file"},
	}
	for i, tc := range cases {
		replace(certFile, tc.cert)
		replace(keyFile, tc.key)
		require.Eventually(t, func() bool {
			return counterValue(m.loadFailures.WithLabelValues(KindSVID, "agent")) >= float64(i+1)
		}, waitTimeout, 10*time.Millisecond, tc.name)
		failed := logs.FilterMessage("SVID refused; keeping the last good SVID").All()
		require.NotEmpty(t, failed, tc.name)
		require.Contains(t, fmt.Sprint(failed[len(failed)-1].ContextMap()["error"]), tc.want, tc.name)
		cur, err := src.GetX509SVID()
		require.NoError(t, err)
		require.Same(t, good, cur, tc.name)
		// At start, the same files are refused with the same error.
		_, err = NewFileSVIDSource(FileSVIDConfig{Role: model.Agent, CertFile: certFile, KeyFile: keyFile, ID: agentID}, zap.NewNop(), nil)
		require.ErrorContains(t, err, tc.want, tc.name)
		for _, l := range secret {
			require.NotContains(t, err.Error(), l, tc.name)
		}
		require.NotContains(t, err.Error(), "PRIVATE KEY", tc.name)
		require.NoError(t, os.Remove(keyFile)) // a pipe cannot be renamed over by a file on every system
	}
	require.NotZero(t, logs.Len())
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			for _, l := range secret {
				require.NotContains(t, fmt.Sprint(v), l, k)
			}
			require.NotContains(t, fmt.Sprint(v), "PRIVATE KEY", k)
		}
	}
}
