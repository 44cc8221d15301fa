// Command runbookbot runs operational runbooks from chat (serve, dev) and
// from the terminal (lint, dry-run, run, history).
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

const usage = `runbookbot runs operational runbooks from chat and from the terminal.

Usage:
  runbookbot dev       [--addr 127.0.0.1:3000] [--runbooks DIR] [--data-dir DIR]
  runbookbot serve     [--runbooks DIR] [--store URL] [--rbac FILE]  (Slack Socket Mode)
  runbookbot lint      [PATH...]
  runbookbot dry-run   NAME|FILE [--param k=v ...] [--json]
  runbookbot run       NAME|FILE [--param k=v ...] [--yes] [--as USER]
  runbookbot history   [--runbook N] [--outcome O] [--since 24h] [--limit N] [--json]
  runbookbot drift     [--runbooks DIR] [--json] [-v]   (exit 1 when runbooks name targets that no longer exist)
  runbookbot schedules [--json] | pause NAME | resume NAME
  runbookbot schema    (JSON Schema of the runbook format, for editors)
  runbookbot version

Common flags (and environment):
  --runbooks DIR   runbooks, mappings, RBAC and secrets config (RUNBOOKBOT_RUNBOOKS, default ./runbooks)
  --data-dir DIR   embedded store directory (RUNBOOKBOT_DATA_DIR, default ~/.local/share/runbookbot)
  --store URL      redis://... to keep executions in Redis instead (RUNBOOKBOT_STORE or REDIS_URL)
  --log-format F   serve and dev log as text (default) or json (RUNBOOKBOT_LOG_FORMAT)

Exit codes: 0 success, 1 failure, 2 usage, 3 partial, 4 rolled back, 5 aborted.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: tests call it in-process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "lint":
		return cmdLint(ctx, rest, stdout, stderr)
	case "dry-run", "dryrun", "plan":
		return cmdDryRun(ctx, rest, stdout, stderr)
	case "run":
		return cmdRun(ctx, rest, stdin, stdout, stderr)
	case "drift":
		return cmdDrift(ctx, rest, stdout, stderr)
	case "history":
		return cmdHistory(ctx, rest, stdout, stderr)
	case "schedules":
		return cmdSchedules(ctx, rest, stdout, stderr)
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "dev":
		return cmdDev(ctx, rest, stdout, stderr)
	case "version", "--version":
		return cmdVersion(stdout)
	case "schema":
		return cmdSchema(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "runbookbot: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}
