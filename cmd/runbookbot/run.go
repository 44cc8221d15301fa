package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/redis"
)

// runFlags defines run's command line.
func runFlags(a *runbookArgs) (fs *flag.FlagSet, yes *bool, as *string) {
	fs = flag.NewFlagSet("run", flag.ContinueOnError)
	a.register(fs)
	yes = fs.Bool("yes", false, "approve every approval gate automatically (demos)")
	as = fs.String("as", envOr("USER", "cli"), "`USER` running it (the requester)"+env("USER"))
	return fs, yes, as
}

func cmdRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var a runbookArgs
	fs, yes, as := runFlags(&a)
	if !a.parse(fs, args, stderr, "runbookbot run NAME|FILE [--param k=v ...] [--yes] [--as USER]") {
		return exitUsage
	}
	out := &terminal{w: stdout}
	reg := buildRegistry(registryOptions{notifier: engine.NotifierFunc(func(_ context.Context, n engine.Notification) error {
		out.printf("    notification [%s] → %s: %s\n", n.Severity, strings.Join(n.Channels, ", "), strings.TrimSpace(n.Message))
		return nil
	})})
	rb, cat, code := loadRunbook(reg, a.runbooks, a.target, stderr)
	if rb == nil {
		return code
	}
	if _, ok := cat.Runbooks[rb.Name()]; !ok {
		cat.Runbooks[rb.Name()] = rb
	}
	store, where, err := openStore(ctx, a.common)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot: %v\n", err)
		return exitFailure
	}
	defer store.Close()
	defer shipAudit(store, stderr) // after the engine has stopped
	cfg := engine.Config{Store: store, Registry: reg, Catalog: cat, Secrets: envSecrets{}, DefaultStepTimeout: 10 * time.Minute}
	if rs, ok := store.(*redis.Store); ok {
		// serve replicas may share this store: the lease keeps them from
		// taking the execution over while this command drives it.
		cfg.Leases, cfg.Owner = rs, hostOwner()
	}
	eng := engine.New(cfg)
	defer eng.Close()
	events := make(chan engine.Event, 1024)
	pre, total := len(rb.Preconditions), len(rb.Preconditions)+len(rb.Steps)
	// Progress is printed on the execution's goroutine, so it interleaves
	// correctly with what the steps themselves print. A step's number is its
	// place in the runbook, whether it started, was skipped or failed first.
	eng.Subscribe(func(e engine.Event) {
		switch e.Type {
		case engine.EventStepStarted:
			out.printf("  %s %s …\n", counter(e.Step, pre, total), label(e.Step))
		case engine.EventStepFinished:
			out.printf("  %s %s %s%s\n", counter(e.Step, pre, total), label(e.Step), mark(e.Step.Status), detail(e.Step))
			if msg := logMessage(e.Step); msg != "" {
				out.printf("      %s\n", msg)
			}
		case engine.EventWatchStarted, engine.EventWatchFinished:
			out.printf("  👁 %s\n", e.Message)
		case engine.EventWatchCheck:
			if e.Watch.Held || e.Watch.Error != "" {
				out.printf("  👁 %s\n", e.Message)
			}
		case engine.EventApprovalEscalated:
			out.printf("  ⏫ %s\n", e.Message)
		case engine.EventApprovalRefused:
			out.printf("  ✋ %s\n", e.Message)
		case engine.EventApprovalDecided:
			out.printf("  ✔ %s\n", e.Message)
		case engine.EventRollbackStarted:
			out.printf("  ↩ rollback (%s): %s\n", e.Rollback.Procedure, e.Rollback.Reason)
		case engine.EventApprovalRequested, engine.EventExecutionFinished:
			events <- e
		}
	})
	id, err := eng.Start(ctx, engine.StartRequest{Runbook: rb.Name(), Params: a.params, Trigger: engine.TriggerInfo{Type: "manual", Source: "cli", TriggeredBy: *as}})
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot: %v\n", err)
		var pe *engine.ParamError
		if errors.As(err, &pe) {
			fmt.Fprintln(stderr, paramUsage(rb))
		}
		return exitUsage
	}
	out.printf("▶ %s %s  execution %s  (store: %s)\n", rb.Name(), rb.Version(), id, where)
	lines := bufio.NewScanner(stdin)
	for {
		select {
		case <-ctx.Done():
			out.printf("\ninterrupted: cancelling execution %s\n", id)
			_ = eng.Cancel(context.Background(), id, *as)
			ctx = context.Background()
		case e := <-events:
			if e.ExecutionID != id {
				continue
			}
			switch e.Type {
			case engine.EventApprovalRequested:
				a := e.Approval
				out.printf("  ⏸ approval needed for %s: %s (times out %s)\n", a.Step, a.Reason, a.Deadline.Local().Format("15:04:05"))
				go answer(ctx, eng, a, *as, *yes, lines, out)
			case engine.EventExecutionFinished:
				out.printf("■ %s: %s", id, e.Outcome)
				if e.Message != "" {
					out.printf(" — %s", e.Message)
				}
				out.printf("\n")
				return outcomeCode(e.Outcome)
			}
		}
	}
}

// auditFlushTimeout bounds how long run waits at exit for the audit stream.
const auditFlushTimeout = 10 * time.Second

// shipAudit leaves the events of a run in the Redis audit stream before the
// command exits, as serve's mirror would (same stream, same cursor, so
// nothing is shipped twice): to RUNBOOKBOT_AUDIT_REDIS, else to the Redis
// store's own server. With the embedded store there is nothing to do.
func shipAudit(store engine.Store, stderr io.Writer) {
	rs, ok := store.(*redis.Store)
	if !ok {
		return
	}
	client := rs.Client()
	if url := os.Getenv("RUNBOOKBOT_AUDIT_REDIS"); url != "" {
		c, err := redis.NewClient(url)
		if err != nil {
			fmt.Fprintf(stderr, "runbookbot: audit stream: %v; a running serve ships these events later\n", err)
			return
		}
		defer c.Close()
		client = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), auditFlushTimeout)
	defer cancel()
	m := redis.NewMirror(store, client, redis.WithMirrorLogger(slog.New(slog.DiscardHandler)))
	if err := m.Flush(ctx); err != nil {
		fmt.Fprintf(stderr, "runbookbot: %v; a running serve ships the rest later\n", err)
	}
}

// answer asks at the prompt (or approves with --yes). Four-eyes applies:
// the approver named at the prompt must not be the requester.
func answer(ctx context.Context, eng *engine.Engine, a *engine.ApprovalRecord, requester string, yes bool, in *bufio.Scanner, out *terminal) {
	if yes {
		res, err := eng.Decide(ctx, engine.DecisionRequest{ApprovalID: a.ID, User: "auto-approve (--yes)", Verb: engine.DecisionApprove, Comment: "--yes"})
		if err != nil {
			out.printf("  auto-approve failed: %v\n", err)
		} else if !res.Final {
			out.printf("  auto-approve counted; still needed: %s\n", res.Needed)
		}
		return
	}
	// End of input is a "no": nobody is left to answer, so the requester's
	// own rejection ends the wait instead of the prompt hanging.
	noAnswer := func() {
		out.printf("\n  no answer (end of input): rejecting %s\n", a.Step)
		if _, err := eng.Decide(ctx, engine.DecisionRequest{ApprovalID: a.ID, User: requester, Verb: engine.DecisionReject,
			Comment: "no answer at the terminal prompt (end of input)"}); err != nil && !errors.Is(err, engine.ErrAlreadyDecided) && !errors.Is(err, engine.ErrFinished) {
			out.printf("  %v\n", err)
		}
	}
	for {
		out.printf("  approve %s? [y/n]: ", a.Step)
		if !in.Scan() {
			noAnswer()
			return
		}
		verb := engine.DecisionReject
		switch strings.ToLower(strings.TrimSpace(in.Text())) {
		case "y", "yes":
			verb = engine.DecisionApprove
		case "n", "no":
		default:
			continue
		}
		out.printf("  your name (not %s): ", requester)
		if !in.Scan() {
			noAnswer()
			return
		}
		user := strings.TrimSpace(in.Text())
		comment := ""
		if verb == engine.DecisionReject {
			out.printf("  comment: ")
			if in.Scan() {
				comment = strings.TrimSpace(in.Text())
			}
		}
		res, err := eng.Decide(ctx, engine.DecisionRequest{ApprovalID: a.ID, User: user, Verb: verb, Comment: comment})
		switch {
		case err == nil && res.Final:
			return
		case err == nil:
			out.printf("  counted; still needed: %s\n", res.Needed)
		case errors.Is(err, engine.ErrAlreadyDecided), errors.Is(err, engine.ErrFinished):
			return
		default:
			out.printf("  %v\n", err)
		}
	}
}

func counter(s *engine.StepRecord, preconditions, total int) string {
	switch s.Phase {
	case engine.PhaseRollback:
		return "[rollback]"
	case engine.PhasePrecondition:
		return fmt.Sprintf("[%d/%d]", s.Index+1, total)
	}
	return fmt.Sprintf("[%d/%d]", preconditions+s.Index+1, total)
}

// logMessage is what a log step printed (log/print, log/info …).
func logMessage(s *engine.StepRecord) string {
	if (s.Type != "log" && s.Type != "echo") || s.Status != engine.StepSuccess {
		return ""
	}
	return strings.TrimSpace(engine.Stringify(s.Output["message"]))
}

func label(s *engine.StepRecord) string {
	if s.Phase == engine.PhasePrecondition {
		return "precondition " + s.Name
	}
	return s.Name
}

func mark(s engine.StepStatus) string {
	switch s {
	case engine.StepSuccess:
		return "ok"
	case engine.StepSkipped:
		return "skipped"
	case engine.StepInterrupted:
		return "INTERRUPTED"
	}
	return "FAILED"
}

func detail(s *engine.StepRecord) string {
	var parts []string
	if s.DurationMs > 0 || s.Status == engine.StepSuccess {
		parts = append(parts, (time.Duration(s.DurationMs) * time.Millisecond).String())
	}
	if s.Error != "" {
		parts = append(parts, s.Error)
	}
	if s.Reason != "" {
		parts = append(parts, s.Reason)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

func outcomeCode(o engine.Outcome) int {
	switch o {
	case engine.OutcomeSuccess:
		return exitOK
	case engine.OutcomePartial:
		return exitPartial
	case engine.OutcomeRollback:
		return exitRollback
	case engine.OutcomeAborted:
		return exitAborted
	}
	return exitFailure
}

// terminal serialises writes from the event loop and the prompt.
type terminal struct {
	w  io.Writer
	mu sync.Mutex
}

func (t *terminal) printf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, format, args...)
}

// envSecrets resolves secrets.NAME from the environment variable
// RUNBOOKBOT_SECRET_NAME, for local runs.
type envSecrets struct{}

func (envSecrets) Secret(_ context.Context, name string) (any, error) {
	key := "RUNBOOKBOT_SECRET_" + strings.ToUpper(name)
	if v, ok := os.LookupEnv(key); ok {
		return v, nil
	}
	return nil, fmt.Errorf("not set (export %s to provide it locally)", key)
}
