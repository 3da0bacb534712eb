package main

import (
	"fmt"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

// version and revision, when set at build time with -ldflags "-X
// main.version=... -X main.revision=...", override what the Go toolchain
// records: a release is built with -trimpath and often outside a VCS
// checkout (or with -buildvcs=false), where it records neither.
var version, revision string

// buildInfo is the module version and VCS revision the binary was built
// from, as the Go toolchain recorded them; "unknown" where it did not
// (a build outside a VCS checkout has no revision).
func buildInfo() (ver, rev string) {
	ver, rev = "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			ver = bi.Main.Version
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && rev != "unknown" {
			rev += "-dirty"
		}
	}
	if version != "" {
		ver = version
	}
	if revision != "" {
		rev = revision
	}
	return ver, rev
}

// buildInfoMetric is meshfed_build_info{version,revision} 1, the usual
// way to put a build on dashboards and in alerts.
func buildInfoMetric() prometheus.Collector {
	ver, rev := buildInfo()
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "meshfed_build_info",
		Help:        "The build of this agent: module version and VCS revision; always 1.",
		ConstLabels: prometheus.Labels{"version": ver, "revision": rev},
	}, func() float64 { return 1 })
}

// VersionInfo is what meshfed version -o json writes.
type VersionInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision"`
}

func versionCmd() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the module version and the VCS revision of this build",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			ver, rev := buildInfo()
			if output == "json" {
				return printAs(c.OutOrStdout(), output, VersionInfo{Version: ver, Revision: rev}, nil)
			}
			fmt.Fprintf(c.OutOrStdout(), "meshfed %s (revision %s)\n", ver, rev)
			return nil
		},
	}
	addOutput(c, &output, "text", "json")
	return c
}
