package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
)

func TestLogsHaveRFC3339TimesAndWarningsAreNeverSampled(t *testing.T) {
	var buf bytes.Buffer
	log, level, err := (&logFlags{level: "info", format: "json"}).logger(&buf)
	require.NoError(t, err)
	for range 1000 {
		log.Warn("peer stream failed; retrying")
	}
	log.Debug("not written at info")
	require.NoError(t, log.Sync())
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1000, "every warning is written")
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	_, err = time.Parse(time.RFC3339, first["ts"].(string))
	require.NoError(t, err, "ts %q", first["ts"])
	require.Equal(t, "warn", first["level"])

	// The level is shared with what the admin API changes.
	level.SetLevel(zapcore.DebugLevel)
	buf.Reset()
	log.Debug("written at debug")
	require.Contains(t, buf.String(), "written at debug")
}

func TestConsoleLogFormat(t *testing.T) {
	var buf bytes.Buffer
	log, _, err := (&logFlags{level: "warn", format: "console"}).logger(&buf)
	require.NoError(t, err)
	log.Info("not written at warn")
	log.Warn("written")
	fields := strings.Split(strings.TrimSpace(buf.String()), "\t")
	require.Len(t, strings.Split(strings.TrimSpace(buf.String()), "\n"), 1)
	_, err = time.Parse(time.RFC3339, fields[0])
	require.NoError(t, err)
	require.Equal(t, "WARN", fields[1])
}

func TestLogFlagsRefuseUnknownValues(t *testing.T) {
	_, _, err := (&logFlags{level: "verbose", format: "json"}).logger(&bytes.Buffer{})
	require.EqualError(t, err, `--log-level: "verbose" is not debug, info, warn or error`)
	_, _, err = (&logFlags{level: "info", format: "text"}).logger(&bytes.Buffer{})
	require.EqualError(t, err, `--log-format: "text" is not json or console`)
}
