package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/runbookbot/runbookbot/commands/api"
	"github.com/runbookbot/runbookbot/commands/schedule"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/embedded"
	"github.com/runbookbot/runbookbot/integrations/redis"
)

// openTriggerStores opens the schedule state and the API's idempotency
// keys beside the event store: keys in Redis, or files in the embedded
// store's directory (where).
func openTriggerStores(store engine.Store, where string, clock engine.Clock) (schedule.Store, api.Keys, error) {
	switch s := store.(type) {
	case *redis.Store:
		return redis.NewSchedules(s), redis.NewIdempotencyKeys(s), nil
	case *embedded.Store:
		sched, err := embedded.OpenSchedules(s.Dir())
		if err != nil {
			return nil, nil, err
		}
		keys, err := embedded.OpenIdempotencyKeys(s.Dir(), clock.Now)
		if err != nil {
			return nil, nil, err
		}
		return sched, keys, nil
	}
	return schedule.NewMemoryStore(), api.NewMemoryKeys(clock.Now), nil
}

const schedulesUsage = `usage: runbookbot schedules [--json]
       runbookbot schedules pause|resume NAME [--as USER]`

// cmdSchedules lists the schedule runbooks with their next fire times, or
// pauses and resumes one (for every replica sharing the store).
// schedulesFlags defines schedules' command line.
func schedulesFlags(c *common) (fs *flag.FlagSet, jsonOut *bool, as *string) {
	fs = flag.NewFlagSet("schedules", flag.ContinueOnError)
	c.register(fs)
	jsonOut = fs.Bool("json", false, "print the list as JSON")
	as = fs.String("as", envOr("USER", "cli"), "`USER` who pauses or resumes (recorded with the pause)"+env("USER"))
	return fs, jsonOut, as
}

func cmdSchedules(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c common
	fs, jsonOut, as := schedulesFlags(&c)
	pos, ok := parse(fs, args, stderr)
	if !ok {
		return exitUsage
	}
	verb, name := "list", ""
	switch {
	case len(pos) == 0:
	case len(pos) == 2 && (pos[0] == "pause" || pos[0] == "resume"):
		verb, name = pos[0], pos[1]
	default:
		fmt.Fprintln(stderr, schedulesUsage)
		return exitUsage
	}
	cat, diags := engine.LoadPaths(buildRegistry(registryOptions{}), c.runbooks)
	if len(diags) > 0 {
		fmt.Fprintf(stderr, "warning: %d problem(s) in %s; a runbook with errors does not load (run `runbookbot lint %s`)\n", len(diags), c.runbooks, c.runbooks)
	}
	sstore, closeStore, err := openScheduleState(ctx, c, verb != "list")
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot schedules: %v\n", err)
		return exitFailure
	}
	defer closeStore()
	s := schedule.New(schedule.Config{Store: sstore, Catalog: func() *engine.Catalog { return cat }, Channel: envOr("RUNBOOKBOT_RUNS_CHANNEL", "#ops")})
	switch verb {
	case "pause", "resume":
		f := s.Pause
		if verb == "resume" {
			f = s.Resume
		}
		if err := f(ctx, name, *as); err != nil {
			fmt.Fprintf(stderr, "runbookbot schedules %s: %v\n", verb, err)
			if errors.Is(err, schedule.ErrUnknown) {
				return exitUsage
			}
			return exitFailure
		}
		fmt.Fprintf(stdout, "%sd %s\n", verb, name)
		return exitOK
	}
	list, err := s.List(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot schedules: %v\n", err)
		return exitFailure
	}
	if *jsonOut {
		if list == nil {
			list = []schedule.Status{}
		}
		writeJSON(stdout, list)
		return exitOK
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no runbooks with a schedule trigger")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNBOOK\tSCHEDULE\tNEXT\tLAST\tSTATE")
	for _, l := range list {
		sched := l.Schedule
		if l.Timezone != "" {
			sched += " (" + l.Timezone + ")"
		}
		last, state := "never", "active"
		if !l.Last.IsZero() {
			last = l.Last.UTC().Format(time.RFC3339)
		}
		if l.Paused {
			state = "paused by " + l.PausedBy
		}
		next := "never"
		if !l.Next.IsZero() {
			next = l.Next.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Runbook, sched, next, last, state)
	}
	_ = tw.Flush()
	return exitOK
}

// openScheduleState opens the schedule state of the configured store. A
// running bot holding the embedded store still lets the list be read;
// pausing then goes through that bot (chat).
func openScheduleState(ctx context.Context, c common, write bool) (schedule.Store, func(), error) {
	st, where, err := openStore(ctx, c)
	if errors.Is(err, embedded.ErrLocked) && !write {
		s, err := embedded.OpenSchedules(where)
		return s, func() {}, err
	}
	if errors.Is(err, embedded.ErrLocked) {
		return nil, nil, fmt.Errorf("a running runbookbot holds %s: pause or resume from chat (/runbook schedules) instead", where)
	}
	if err != nil {
		return nil, nil, err
	}
	sstore, _, err := openTriggerStores(st, where, engine.SystemClock{})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return sstore, func() { st.Close() }, nil
}
