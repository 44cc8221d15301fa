package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// historyFlags defines history's command line: the store in c, the
// filters in q and the rest returned.
func historyFlags(c *common, q *engine.HistoryQuery) (fs *flag.FlagSet, outcome, since *string, jsonOut *bool) {
	fs = flag.NewFlagSet("history", flag.ContinueOnError)
	c.register(fs)
	fs.StringVar(&q.Runbook, "runbook", "", "only this runbook (or give its `NAME` as the argument)")
	outcome = fs.String("outcome", "", "only this outcome: success, failure, partial, rollback, aborted")
	fs.StringVar(&q.TriggerType, "trigger", "", "only this trigger type: manual, alert, schedule, api")
	fs.StringVar(&q.Requester, "requester", "", "only executions started by this `USER`")
	since = fs.String("since", "", "only executions started within this long, e.g. 24h or 7d")
	fs.IntVar(&q.Limit, "limit", 20, "at most this many executions")
	jsonOut = fs.Bool("json", false, "print JSON")
	return fs, outcome, since, jsonOut
}

func cmdHistory(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c common
	var q engine.HistoryQuery
	fs, outcome, since, jsonOut := historyFlags(&c, &q)
	pos, ok := parse(fs, args, stderr)
	if !ok {
		return exitUsage
	}
	if len(pos) == 1 && q.Runbook == "" {
		q.Runbook = pos[0]
	} else if len(pos) > 0 {
		fmt.Fprintln(stderr, "usage: runbookbot history [RUNBOOK] [--outcome O] [--since 24h] [--limit N] [--json]")
		return exitUsage
	}
	if err := parseHistoryFilters(&q, *outcome, *since, time.Now()); err != nil {
		fmt.Fprintf(stderr, "runbookbot history: %v\n", err)
		return exitUsage
	}
	store, err := openHistoryStore(ctx, c, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot: %v\n", err)
		return exitFailure
	}
	defer store.Close()
	rows, err := store.History(ctx, q)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot: reading history: %v\n", err)
		return exitFailure
	}
	if *jsonOut {
		if rows == nil {
			rows = []engine.Summary{}
		}
		writeJSON(stdout, rows)
		return exitOK
	}
	if len(rows) == 0 {
		fmt.Fprintln(stdout, "no executions match")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "EXECUTION\tRUNBOOK\tSTATUS\tTRIGGER\tBY\tSTARTED\tDURATION")
	for _, r := range rows {
		status := string(r.Outcome)
		if status == "" {
			status = r.Status
		}
		dur := "-"
		if r.EndedAt != nil {
			dur = (time.Duration(r.DurationMs) * time.Millisecond).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ExecutionID, r.RunbookName, status, r.Trigger.Type, r.Trigger.TriggeredBy, r.StartedAt.Local().Format("2006-01-02 15:04:05"), dur)
	}
	tw.Flush()
	return exitOK
}

var outcomes = []string{"success", "failure", "partial", "rollback", "aborted"}

// parseHistoryFilters validates --outcome and --since (shared with chat).
func parseHistoryFilters(q *engine.HistoryQuery, outcome, since string, now time.Time) error {
	if outcome != "" {
		ok := false
		for _, o := range outcomes {
			if o == outcome {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("unknown outcome %q: use one of %s", outcome, strings.Join(outcomes, ", "))
		}
		q.Outcome = engine.Outcome(outcome)
	}
	if since != "" {
		d, err := engine.ParseDuration(since)
		if err != nil {
			return fmt.Errorf("--since: %v (use e.g. 30m, 24h, 7d)", err)
		}
		q.Since = now.Add(-d)
	}
	if q.Limit < 0 {
		return fmt.Errorf("--limit must be positive")
	}
	return nil
}
