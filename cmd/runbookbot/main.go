// Command runbookbot runs operational runbooks from chat (serve, dev) and
// from the terminal (lint, dry-run, run, history, drift, schedules). The
// command tree, its help and shell completion are in cli.go.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes. Scripts branch on them.
const (
	exitOK       = 0
	exitFailure  = 1 // lint errors, failed execution
	exitUsage    = 2 // bad command line, unknown runbook, bad parameter
	exitPartial  = 3
	exitRollback = 4
	exitAborted  = 5
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: tests call it in-process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	code := exitOK
	root := newCLI(stdin, stdout, stderr, &code)
	if len(args) == 0 {
		fmt.Fprintf(stderr, "%s\n\n%s", root.Long, root.UsageString())
		return exitUsage
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		printUsageError(stderr, cmd, err)
		return exitUsage
	}
	return code
}
