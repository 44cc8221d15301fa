package bot

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// A conversation's last post token is kept for what matters: with two
// tokens and no refill, one step reply is posted, the second waits, and a
// new execution's parent queued after it goes at once.
func TestOutboxKeepsTheLastPostTokenForUrgentPosts(t *testing.T) {
	o := newOutbox(Limits{PostBurst: 2, PostEvery: time.Hour, UpdateBurst: 1, UpdateEvery: time.Hour, StepPatience: time.Hour}, slog.New(slog.DiscardHandler))
	nop := func(context.Context) error { return nil }
	now := time.Now()
	step := func(key string) mark {
		return mark{key: key, conv: "#ops", kind: kindPost, prio: prioStep, ready: true, send: nop}
	}
	o.add(step("step 1"))
	it, _, _, _ := o.next(now)
	if it == nil || it.key != "step 1" {
		t.Fatalf("first send = %v, want step 1", it)
	}
	o.finish(it, nil, false)
	o.add(step("step 2"))
	if it, _, _, wait := o.next(now); it != nil || wait <= 0 {
		t.Fatalf("step 2 took the last token (%v, wait %s)", it, wait)
	}
	o.add(mark{key: "parent", conv: "#ops", kind: kindPost, prio: prioUrgent, ready: true, send: nop})
	if it, _, _, _ := o.next(now); it == nil || it.key != "parent" {
		t.Fatalf("send after the parent was queued = %v, want the parent", it)
	}
}

// Calls a platform holds back because it knows they would be refused are
// counted apart from 429s the platform answered, and the outbox's queue
// length is visible while they wait.
func TestPacedCallsAreNotCountedAs429s(t *testing.T) {
	h := newHarness(t)
	var held atomic.Bool
	var paced, refused atomic.Int32
	held.Store(true)
	h.p.mu.Lock()
	h.p.failFor = func(_, conv string) error {
		switch {
		case conv != "#ops":
		case held.Load():
			paced.Add(1)
			return &RateLimitedError{RetryAfter: 5 * time.Millisecond, Predicted: true}
		case refused.Add(1) == 1:
			return &RateLimitedError{RetryAfter: 5 * time.Millisecond}
		}
		return nil
	}
	h.p.mu.Unlock()
	if err := h.bot.Notify(context.Background(), engine.Notification{Channels: []string{"#ops"}, Message: "one"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two calls held back", func() bool { return paced.Load() >= 2 })
	if n := h.bot.OutboxPending(); n != 1 {
		t.Errorf("OutboxPending while the post is held back = %d, want 1", n)
	}
	held.Store(false)
	waitFor(t, "the post", func() bool { return len(h.p.posts("#ops", "")) == 1 })
	h.flush()
	st := h.bot.Stats()
	if st.RateLimited != 1 || st.Paced != int(paced.Load()) || st.Sent != 1 {
		t.Errorf("stats = %+v, want 1 sent, 1 rate limited (the real 429) and %d paced", st, paced.Load())
	}
	if n := h.bot.OutboxPending(); n != 0 {
		t.Errorf("OutboxPending once sent = %d, want 0", n)
	}
}
