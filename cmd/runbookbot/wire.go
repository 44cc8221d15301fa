package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/embedded"
	"github.com/runbookbot/runbookbot/integrations/redis"
	"gopkg.in/yaml.v3"
)

// registryOptions are the outside systems step actions reach.
type registryOptions struct {
	notifier engine.Notifier
	logger   *slog.Logger
	// plan builds a registry for dry runs: live data nothing provides is
	// still planned (nothing is read), where lint and runs refuse it.
	plan bool
}

// buildRegistry is the one place that knows every step type.
func buildRegistry(o registryOptions) *engine.Registry {
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, o.notifier)
	registerIntegrations(reg, o)
	return reg
}

// loadRunbook finds a runbook by name in dir, or loads it from a file.
// Problems elsewhere in dir are reported as warnings.
func loadRunbook(reg *engine.Registry, dir, nameOrFile string, stderr io.Writer) (*engine.Runbook, *engine.Catalog, int) {
	if st, err := os.Stat(nameOrFile); err == nil && !st.IsDir() {
		cat, diags := engine.LoadPaths(reg, nameOrFile)
		if len(diags) > 0 {
			for _, d := range diags {
				fmt.Fprintln(stderr, d.String())
			}
			return nil, nil, exitFailure
		}
		for _, rb := range cat.Runbooks {
			return rb, cat, exitOK
		}
		fmt.Fprintf(stderr, "%s: not a runbook\n", nameOrFile)
		return nil, nil, exitUsage
	}
	cat, diags := engine.LoadPaths(reg, dir)
	rb, err := cat.Lookup(nameOrFile)
	if err != nil {
		// The runbook may be there and not load: say why, not "unknown".
		var own engine.Diagnostics
		for _, d := range diags {
			if b, rerr := os.ReadFile(d.File); rerr == nil && runbookNamed(b, nameOrFile) {
				own = append(own, d)
			}
		}
		if len(own) > 0 {
			fmt.Fprintf(stderr, "runbookbot: runbook %s does not load in this configuration:\n", nameOrFile)
			for _, d := range own {
				fmt.Fprintf(stderr, "  %s\n", d.String())
			}
			return nil, nil, exitFailure
		}
		if len(diags) > 0 {
			fmt.Fprintf(stderr, "warning: %d problem(s) in %s; a runbook with errors does not load (run `runbookbot lint %s`)\n", len(diags), dir, dir)
		}
		fmt.Fprintf(stderr, "runbookbot: %v\n", err)
		return nil, nil, exitUsage
	}
	if len(diags) > 0 {
		fmt.Fprintf(stderr, "warning: %d problem(s) in %s (run `runbookbot lint %s`)\n", len(diags), dir, dir)
	}
	return rb, cat, exitOK
}

// runbookNamed reports whether a runbook file's metadata.name is name.
func runbookNamed(data []byte, name string) bool {
	var rb struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	}
	return yaml.Unmarshal(data, &rb) == nil && rb.Metadata.Name == name
}

// openHistoryStore opens the store for reading: when a running bot holds
// the embedded store, a read-only snapshot of it.
func openHistoryStore(ctx context.Context, c common, stderr io.Writer) (engine.Store, error) {
	st, where, err := openStore(ctx, c)
	if errors.Is(err, embedded.ErrLocked) {
		ro, rerr := embedded.OpenReadOnly(where)
		if rerr != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "note: a running runbookbot holds %s; showing a snapshot\n", where)
		return ro, nil
	}
	return st, err
}

// openStore opens the configured store: Redis for redis:// URLs, else the
// embedded store in the data dir.
func openStore(ctx context.Context, c common) (engine.Store, string, error) {
	if s := c.store; strings.HasPrefix(s, "redis") || strings.HasPrefix(s, "rediss") {
		st, err := redis.NewStore(ctx, s)
		if err != nil {
			return nil, "", fmt.Errorf("opening Redis store: %w", err)
		}
		return st, redactURL(s), nil
	} else if s != "" {
		return nil, "", fmt.Errorf("unknown store %q: use redis://host:port/db, or leave it empty for the embedded store", s)
	}
	dir := c.dataDir
	if dir == "" {
		var err error
		if dir, err = embedded.DefaultDir(); err != nil {
			return nil, "", err
		}
	}
	st, err := embedded.Open(dir)
	if err != nil {
		return nil, dir, err
	}
	return st, dir, nil
}

// redactURL hides a password in a store URL.
func redactURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if at := strings.LastIndex(s, "@"); at > i {
			return s[:i+3] + "***@" + s[at+1:]
		}
	}
	return s
}
