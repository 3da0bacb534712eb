package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/store"
)

// storeLockWait is how long the store commands wait for the store's lock
// before taking it that an agent runs on it and asking the agent instead.
const storeLockWait = 200 * time.Millisecond

func storeCmd() *cobra.Command {
	c := &cobra.Command{Use: "store", Short: "Check and back up the agent's store"}
	c.AddCommand(storeCheckCmd(), storeBackupCmd())
	return c
}

// storeFlags say where the store is (store.path of --config) and, when an
// agent holds it, how to reach that agent.
type storeFlags struct {
	config, agent string
}

func (f *storeFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.config, "config", "meshfed.yaml", "the agent's configuration file, which names the store (store.path) and the admin address")
	c.Flags().StringVar(&f.agent, "agent", "", "the running agent's admin URL (default: from --config)")
}

// path is the store's path, from the configuration.
func (f *storeFlags) path() (string, error) {
	cfg, err := config.Load(f.config)
	if err != nil {
		return "", err
	}
	return cfg.Store.Path, nil
}

// fromAgent writes a copy of the running agent's store to out (checked,
// as store.WriteBackup does).
func (f *storeFlags) fromAgent(ctx context.Context, out string) (store.Summary, string, error) {
	af := agentFlags{url: f.agent, config: f.config}
	c, err := af.client()
	if err != nil {
		return store.Summary{}, "", err
	}
	sum, err := store.WriteBackup(out, func(w io.Writer) error {
		_, err := c.Download(ctx, "/api/v1/store/backup", w)
		return err
	})
	return sum, c.BaseURL, err
}

func storeSummary(s store.Summary) string {
	return fmt.Sprintf("%s, %s, %d bytes", plural(s.Peers, "peer"), plural(s.Imports, "import"), s.Bytes)
}

func storeCheckCmd() *cobra.Command {
	var f storeFlags
	c := &cobra.Command{
		Use:   "check",
		Short: "Check the store as the agent does before it opens it",
		Long: `Check the store that the configuration names (store.path) as the agent
does before it opens it: every page within the file, every bucket, key and
import readable, and bbolt's consistency check. A damaged store is named
with the way out: restore it from a backup, or move it aside and start with
an empty one (peers send their services again when they reconnect).

While an agent runs on the store, which it holds locked, the check is made
on a copy the agent gives over its admin API (from loopback only).

Exit status: 0 when the store is whole (or does not exist yet), 1 when it
is damaged or cannot be read, 2 when it is an empty file.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			path, err := f.path()
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			sum, err := store.Check(path, store.WithTimeout(storeLockWait))
			if errors.Is(err, store.ErrLocked) {
				dir, derr := os.MkdirTemp("", "meshfed-store-check-")
				if derr != nil {
					return derr
				}
				defer os.RemoveAll(dir)
				var from string
				sum, from, err = f.fromAgent(c.Context(), filepath.Join(dir, "meshfed.db"))
				if err != nil {
					return fmt.Errorf("%s is held by a running agent, and checking a copy of it failed: %w", path, err)
				}
				fmt.Fprintf(w, "%s: ok (a copy from the running agent at %s): %s\n", path, from, storeSummary(sum))
				return nil
			}
			switch {
			case err != nil:
				return err
			case sum.New && !sum.Empty:
				fmt.Fprintf(w, "%s: no store yet; the agent makes a new one\n", path)
			case sum.New:
				fmt.Fprintf(w, "%s: warning: %s: the agent starts with a new, empty store; if it held imports, restore it from a backup\n", path, sum.Found())
				return &exitError{code: 2}
			default:
				fmt.Fprintf(w, "%s: ok: %s\n", path, storeSummary(sum))
			}
			return nil
		},
	}
	f.add(c)
	return c
}

func storeBackupCmd() *cobra.Command {
	var f storeFlags
	c := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a checked copy of the store to FILE, from the running agent or from the file",
		Long: `Write a copy of the store to FILE (mode 0600), check it as a store, and
only then put it in place: FILE is a whole, checked backup or is left as it
was.

While an agent runs on the store, the copy comes from the agent over its
admin API (from loopback only): a consistent copy as one read transaction
sees it, taken while the agent goes on writing (bbolt's online backup).
Otherwise the store file is checked and copied.

To restore: stop the agent, put the backup at store.path, start the agent.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			out := args[0]
			path, err := f.path()
			if err != nil {
				return err
			}
			sum, err := store.BackupFile(path, out, store.WithTimeout(storeLockWait))
			from := path
			if errors.Is(err, store.ErrLocked) {
				var url string
				sum, url, err = f.fromAgent(c.Context(), out)
				from = "the running agent at " + url
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "wrote %s from %s: %s\n", out, from, storeSummary(sum))
			return nil
		},
	}
	f.add(c)
	return c
}
