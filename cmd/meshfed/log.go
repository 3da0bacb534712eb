package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logFlags say how the agent logs.
type logFlags struct {
	level, format string
	debug         bool
}

func (f *logFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.level, "log-level", "info", "debug, info, warn or error; changeable while running through the admin API (/api/v1/loglevel)")
	c.Flags().StringVar(&f.format, "log-format", "json", "json or console")
	c.Flags().BoolVar(&f.debug, "debug", false, "log at debug level (the same as --log-level=debug)")
	_ = c.Flags().MarkDeprecated("debug", "use --log-level=debug")
	_ = c.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{"json", "console"}, cobra.ShellCompDirectiveNoFileComp))
}

// rfc3339Millis is RFC 3339 with milliseconds, of a fixed width.
const rfc3339Millis = "2006-01-02T15:04:05.000Z07:00"

// Sampling of repeated info and debug messages: within each second, the
// first 100 of a message are logged and then every 100th.
const (
	sampleTick       = time.Second
	sampleFirst      = 100
	sampleThereafter = 100
)

// logger builds the agent's logger on w and the level that the admin API
// changes. Repeated info and debug messages are sampled; warnings and
// errors never are, as each may be the one that explains an outage.
func (f *logFlags) logger(w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	name := f.level
	if f.debug {
		name = "debug"
	}
	level, err := zap.ParseAtomicLevel(name)
	if err != nil {
		return nil, level, fmt.Errorf("--log-level: %q is not debug, info, warn or error", name)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout(rfc3339Millis)
	var encoder zapcore.Encoder
	switch f.format {
	case "json":
		encoder = zapcore.NewJSONEncoder(enc)
	case "console":
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		enc.EncodeDuration = zapcore.StringDurationEncoder
		encoder = zapcore.NewConsoleEncoder(enc)
	default:
		return nil, level, fmt.Errorf("--log-format: %q is not json or console", f.format)
	}
	out := zapcore.Lock(zapcore.AddSync(w))
	below := zap.LevelEnablerFunc(func(l zapcore.Level) bool { return level.Enabled(l) && l < zapcore.WarnLevel })
	atOrAbove := zap.LevelEnablerFunc(func(l zapcore.Level) bool { return level.Enabled(l) && l >= zapcore.WarnLevel })
	core := zapcore.NewTee(
		zapcore.NewSamplerWithOptions(zapcore.NewCore(encoder, out, below), sampleTick, sampleFirst, sampleThereafter),
		zapcore.NewCore(encoder.Clone(), out, atOrAbove),
	)
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel), zap.ErrorOutput(out)), level, nil
}
