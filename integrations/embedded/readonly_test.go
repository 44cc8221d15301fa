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
