package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	k8s "k8s.io/client-go/kubernetes"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/drift"
	"github.com/runbookbot/runbookbot/integrations/kubernetes"
	"github.com/runbookbot/runbookbot/integrations/metrics"
	"github.com/runbookbot/runbookbot/integrations/prometheus"
)

// driftChecker builds the drift checker: the cluster from KUBECONFIG (or
// in-cluster), metrics from the configured Prometheus. What is not
// configured is left unchecked.
func driftChecker(o registryOptions) *drift.Checker {
	c := &drift.Checker{}
	contexts := kubernetes.KubeconfigContexts(os.Getenv("KUBECONFIG"))
	if _, err := contexts(""); err == nil || !errors.Is(err, kubernetes.ErrNoKubeconfig) {
		c.Cluster = &drift.KubeCluster{Client: func(name string) (k8s.Interface, error) {
			cl, err := contexts(name)
			if err != nil {
				return nil, err
			}
			return cl.Client, nil
		}}
	}
	if cfg, ok := o.metrics(); ok {
		c.Metrics = promSeries{prometheus.New(cfg)}
	}
	return c
}

// promSeries answers drift.Metrics from the metric queries.
type promSeries struct{ m *prometheus.Metrics }

func (p promSeries) HasSeries(ctx context.Context, name string, vars map[string]any) (bool, error) {
	_, err := p.m.Metric(ctx, name, vars)
	if errors.Is(err, prometheus.ErrNoData) {
		return false, nil
	}
	return err == nil, err
}

// cmdDrift checks the runbooks against the infrastructure once. Exit 1
// when something drifted.
// driftFlags defines drift's command line.
func driftFlags(c *common) (fs *flag.FlagSet, asJSON, verbose *bool) {
	fs = flag.NewFlagSet("drift", flag.ContinueOnError)
	c.register(fs)
	asJSON = fs.Bool("json", false, "print the report as JSON")
	verbose = fs.Bool("v", false, "also list targets that could not be checked")
	return fs, asJSON, verbose
}

func cmdDrift(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c common
	fs, asJSON, verbose := driftFlags(&c)
	if _, ok := parse(fs, args, stderr); !ok {
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	o := registryOptions{logger: log}
	cat, diags := engine.LoadPaths(buildRegistry(o), c.runbooks)
	for _, d := range diags {
		fmt.Fprintln(stderr, d.String())
	}
	if len(cat.Runbooks) == 0 {
		fmt.Fprintf(stderr, "runbookbot drift: no valid runbooks in %s\n", c.runbooks)
		return exitUsage
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	rep := driftChecker(o).Check(cctx, cat)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		for _, f := range rep.Findings {
			fmt.Fprintln(stdout, f.String())
		}
		if *verbose {
			for _, u := range rep.Unchecked {
				fmt.Fprintf(stdout, "%s:%d: runbook %s: not checked: %s\n", u.File, u.Line, u.Runbook, u.Reason)
			}
		}
		if len(rep.Findings) == 0 {
			fmt.Fprintf(stdout, "no drift in %d runbook(s) (%d target(s) not checked; -v lists them)\n", len(rep.Runbooks), len(rep.Unchecked))
		}
	}
	if len(rep.Findings) > 0 {
		return exitFailure
	}
	return exitOK
}

// driftWatch runs the check every interval, exports it as
// runbook_drift_findings and posts to channel when the findings change.
type driftWatch struct {
	checker  *drift.Checker
	catalog  func() *engine.Catalog
	metrics  *metrics.Metrics
	notifier engine.Notifier
	channel  string
	interval time.Duration
	clock    engine.Clock
	log      *slog.Logger
	checks   atomic.Uint64 // checks completed
}

// run checks after a minute (or the interval, if shorter), then every
// interval, until ctx ends.
func (w *driftWatch) run(ctx context.Context) {
	var last map[string]drift.Finding
	if !w.wait(ctx, min(w.interval, time.Minute)) {
		return
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, max(w.interval/2, 30*time.Second))
		rep := w.checker.Check(cctx, w.catalog())
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.metrics.SetDrift(rep.Counts())
		w.checks.Add(1)
		now := map[string]drift.Finding{}
		for _, f := range rep.Findings {
			now[f.Key()] = f
		}
		if last != nil || len(now) > 0 {
			if msg := driftChange(last, now); msg != "" {
				w.log.Warn("drift changed", "findings", len(now))
				if w.channel != "" && w.notifier != nil {
					if err := w.notifier.Notify(ctx, engine.Notification{Channels: []string{w.channel}, Severity: "warning", Message: msg}); err != nil {
						w.log.Error("posting the drift report", "err", err)
					}
				}
			}
		}
		last = now
		if !w.wait(ctx, w.interval) {
			return
		}
	}
}

func (w *driftWatch) wait(ctx context.Context, d time.Duration) bool {
	t := w.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// driftChange describes what appeared and what was fixed, or "".
func driftChange(before, after map[string]drift.Finding) string {
	var added, fixed []string
	for k, f := range after {
		if _, ok := before[k]; !ok {
			added = append(added, f.String())
		}
	}
	for k, f := range before {
		if _, ok := after[k]; !ok {
			fixed = append(fixed, f.String())
		}
	}
	if len(added) == 0 && len(fixed) == 0 {
		return ""
	}
	sort.Strings(added)
	sort.Strings(fixed)
	var b strings.Builder
	fmt.Fprintf(&b, "Runbook drift: %d finding(s) now.", len(after))
	for _, s := range added {
		b.WriteString("\nNEW " + s)
	}
	for _, s := range fixed {
		b.WriteString("\nFIXED " + s)
	}
	return b.String()
}
