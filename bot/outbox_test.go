package bot

import (
	"context"
	"log/slog"
	"testing"
	"time"
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
