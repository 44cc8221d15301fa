package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/runbookbot/runbookbot/engine"
)

// lintFlags defines lint's command line.
func lintFlags() (fs *flag.FlagSet, jsonOut *bool) {
	fs = flag.NewFlagSet("lint", flag.ContinueOnError)
	return fs, fs.Bool("json", false, "print diagnostics as JSON")
}

func cmdLint(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs, jsonOut := lintFlags()
	paths, ok := parse(fs, args, stderr)
	if !ok {
		return exitUsage
	}
	if len(paths) == 0 {
		paths = []string{envOr("RUNBOOKBOT_RUNBOOKS", "runbooks")}
	}
	reg := buildRegistry(registryOptions{})
	cat, diags := engine.LoadPaths(reg, paths...)
	if *jsonOut {
		if diags == nil {
			diags = engine.Diagnostics{}
		}
		writeJSON(stdout, diags)
	} else {
		for _, d := range diags {
			fmt.Fprintln(stderr, d.String())
		}
	}
	if len(diags) > 0 {
		if !*jsonOut {
			fmt.Fprintf(stderr, "%d problem(s) in %d file(s)\n", len(diags), countFiles(diags))
		}
		return exitFailure
	}
	if !*jsonOut {
		fmt.Fprintf(stdout, "ok: %d runbook(s) in %d file(s)\n", len(cat.Runbooks), len(cat.Files))
	}
	return exitOK
}

func countFiles(ds engine.Diagnostics) int {
	seen := map[string]bool{}
	for _, d := range ds {
		seen[d.File] = true
	}
	return len(seen)
}
