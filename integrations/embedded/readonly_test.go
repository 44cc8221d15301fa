package embedded

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// A read-only snapshot reads a store another process holds open.
func TestOpenReadOnlyWhileLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Append(ctx, enginetest.Lifecycle("e1", "rb", "alice", "manual", time.Now(), engine.OutcomeSuccess)...); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open err = %v, want ErrLocked", err)
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	rows, err := ro.History(ctx, engine.HistoryQuery{})
	if err != nil || len(rows) != 1 || rows[0].Outcome != engine.OutcomeSuccess {
		t.Fatalf("History = %+v, %v", rows, err)
	}
	if err := ro.Append(ctx, enginetest.Lifecycle("e2", "rb", "bob", "manual", time.Now(), "")...); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Append on a snapshot err = %v, want ErrReadOnly", err)
	}
	// The writer is unaffected.
	if err := s.Append(ctx, enginetest.Lifecycle("e3", "rb", "bob", "manual", time.Now(), "")...); err != nil {
		t.Fatal(err)
	}
}

// A store closed before anything was written reopens and keeps its header:
// appends after the reopen go after it, and a third open reads them.
func TestReopenEmptyStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	for i := 0; i < 2; i++ {
		s, err := Open(dir)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		s.Close()
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Append(ctx, enginetest.Lifecycle("e1", "rb", "alice", "manual", time.Now(), engine.OutcomeSuccess)...); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir)
	if err != nil {
		t.Fatalf("reopen after appending to a reopened empty store: %v", err)
	}
	defer s.Close()
	if evs, err := s.Events(ctx, "e1"); err != nil || len(evs) != 4 {
		t.Fatalf("events = %d, %v", len(evs), err)
	}
}
