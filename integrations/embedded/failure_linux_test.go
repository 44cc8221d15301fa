//go:build linux

package embedded

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
)

// TestWriteFailureIsSticky makes the log's writes fail with ENOSPC by
// putting /dev/full behind its file descriptor: the failing Append and every
// later one must report the failure, and a reopen must find the events
// acknowledged before it. (Linux only: it uses dup3.)
func TestWriteFailureIsSticky(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	mustAppend(t, s, ev("a", 1, engine.EventExecutionStarted), ev("a", 2, engine.EventStepStarted))
	if err := s.Writable(context.Background()); err != nil {
		t.Fatalf("Writable on a healthy store: %v", err)
	}

	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	if err := syscall.Dup3(int(full.Fd()), int(s.file.Fd()), 0); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	err = s.Append(ctx, ev("a", 3, engine.EventStepFinished))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "read-only until reopened") {
		t.Fatalf("Append on a full disk: %v", err)
	}
	// Readiness sees it.
	if werr := s.Writable(ctx); !errors.Is(werr, syscall.ENOSPC) {
		t.Errorf("Writable after the failure = %v, want the write error", werr)
	}
	// Sticky: even a valid Append for another execution is refused.
	if err2 := s.Append(ctx, ev("b", 1, engine.EventExecutionStarted)); !errors.Is(err2, syscall.ENOSPC) {
		t.Errorf("Append after the failure: %v", err2)
	}
	// The failed events never reached the indexes.
	st := s.Stats()
	if st.Events != 2 || st.Executions != 1 {
		t.Errorf("Stats after failure = %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Logf("Close: %v", err)
	}

	s = openT(t, dir)
	defer s.Close()
	if evs := eventsOf(t, s, "a"); len(evs) != 2 {
		t.Fatalf("a has %d events after reopen, want the 2 acknowledged", len(evs))
	}
	mustAppend(t, s, ev("a", 3, engine.EventStepFinished))
}
