package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/runbookbot/runbookbot/engine"
)

// dryRunFlags defines dry-run's command line.
func dryRunFlags(a *runbookArgs) (fs *flag.FlagSet, jsonOut *bool) {
	fs = flag.NewFlagSet("dry-run", flag.ContinueOnError)
	a.register(fs)
	return fs, fs.Bool("json", false, "print the plan as JSON")
}

func cmdDryRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var a runbookArgs
	fs, jsonOut := dryRunFlags(&a)
	if !a.parse(fs, args, stderr, "runbookbot dry-run NAME|FILE [--param k=v ...] [--json]") {
		return exitUsage
	}
	reg := buildRegistry(registryOptions{plan: true})
	rb, _, code := loadRunbook(reg, a.runbooks, a.target, stderr)
	if rb == nil {
		return code
	}
	plan, err := engine.DryRun(ctx, reg, rb, a.params, nil)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot: %v\n", err)
		var pe *engine.ParamError
		if errors.As(err, &pe) {
			fmt.Fprintln(stderr, paramUsage(rb))
			return exitUsage
		}
		return exitFailure
	}
	if *jsonOut {
		writeJSON(stdout, plan)
		return exitOK
	}
	fmt.Fprint(stdout, plan.Text())
	return exitOK
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// paramUsage lists a runbook's parameters for error messages.
func paramUsage(rb *engine.Runbook) string {
	s := "parameters of " + rb.Name() + ":"
	for _, p := range rb.Parameters {
		req := "optional"
		if p.Required {
			req = "required"
		} else if p.Default != nil {
			req = "default " + engine.Stringify(p.Default)
		}
		s += fmt.Sprintf("\n  %s (%s, %s)", p.Name, p.Type, req)
		if p.Description != "" {
			s += ": " + p.Description
		}
	}
	return s
}
