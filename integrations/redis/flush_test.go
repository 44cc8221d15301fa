package redis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// appendExecs stores executions from..to-1 of fiveStep in src.
func appendExecs(t *testing.T, src *memStore, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := src.Append(context.Background(), fiveStep(fmt.Sprintf("f%03d", i), i)...); err != nil {
			t.Fatal(err)
		}
	}
}

// Events stored while a mirror waits for its next poll reach the stream
// when it is stopped, not only at the next start.
func TestMirrorFlushesOnStop(t *testing.T) {
	srv := sharedRedis(t)
	c := srv.Client(t)
	stream := testPrefix(t) + "audit"
	src := newMemStore()
	appendExecs(t, src, 0, 2)
	m := NewMirror(src, c, WithStream(stream), WithPollInterval(time.Hour), WithFlushOnStop(10*time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	eventually(t, 10*time.Second, "the first executions shipped", func() bool { return m.Stats().Cursor == 2*eventsPerExec })
	appendExecs(t, src, 2, 5) // no Notify: Run would not look for an hour
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run = %v, want %v", err, context.Canceled)
	}
	checkStream(t, c, stream, src)
}

// Flush retries failures until the stream has caught up.
func TestMirrorFlushRetries(t *testing.T) {
	srv := sharedRedis(t)
	c := srv.Client(t)
	stream := testPrefix(t) + "audit"
	src := newMemStore()
	appendExecs(t, src, 0, 3)
	src.failReads.Store(2)
	m := NewMirror(src, c, WithStream(stream), WithBackoff(Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkStream(t, c, stream, src)
	if got := m.Stats().Errors; got != 2 {
		t.Errorf("errors = %d, want 2", got)
	}
}

// A flush that runs out of time says how much it left behind.
func TestMirrorFlushSaysWhatIsLeft(t *testing.T) {
	srv := sharedRedis(t)
	stream := testPrefix(t) + "audit"
	src := newMemStore()
	appendExecs(t, src, 0, 1)
	src.failReads.Store(1 << 30)
	m := NewMirror(src, srv.Client(t), WithStream(stream), WithBackoff(Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2}))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := m.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("left %d events behind", eventsPerExec)) {
		t.Fatalf("Flush = %v, want it to name the %d events left", err, eventsPerExec)
	}
}
