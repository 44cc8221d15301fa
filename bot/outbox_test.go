package bot

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// fakePlatform records calls and can refuse with a rate limit.
type fakePlatform struct {
	mu       sync.Mutex
	posts    int
	updates  []string
	limitN   int // refuse this many calls with 429 first
	refused  int
	messages map[string]string
}

func (f *fakePlatform) Post(_ context.Context, ch, _ string, m Message) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refused < f.limitN {
		f.refused++
		return "", "", &RateLimitedError{RetryAfter: 10 * time.Millisecond}
	}
	f.posts++
	ts := fmt.Sprintf("%d.000100", f.posts)
	f.messages[ts] = m.Text
	return "C1", ts, nil
}

func (f *fakePlatform) Update(_ context.Context, _, ts string, m Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refused < f.limitN {
		f.refused++
		return &RateLimitedError{RetryAfter: 10 * time.Millisecond}
	}
	f.updates = append(f.updates, m.Text)
	f.messages[ts] = m.Text
	return nil
}

func (f *fakePlatform) Ephemeral(context.Context, string, string, Message) error { return nil }
func (f *fakePlatform) OpenModal(context.Context, string, Modal) error           { return nil }
func (f *fakePlatform) Permalink(context.Context, string, string) (string, error) {
	return "", nil
}
func (f *fakePlatform) FindMessage(context.Context, string, string, string) (string, error) {
	return "", ErrNotFound
}

func TestOutboxCoalescesAndSurvivesRateLimits(t *testing.T) {
	p := &fakePlatform{messages: map[string]string{}, limitN: 3}
	o := newOutbox(p, Limits{PostBurst: 1, PostEvery: time.Millisecond, UpdateBurst: 1, UpdateEvery: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.run(ctx) }()
	defer func() { cancel(); <-done }()

	var mu sync.Mutex
	state := 0
	render := func() Message {
		mu.Lock()
		defer mu.Unlock()
		return Message{Text: fmt.Sprintf("state %d", state)}
	}
	o.mark(item{key: "k", channel: "#c", render: render, threadTS: func() string { return "" }})
	// 100 changes while the update bucket allows about one per 50ms.
	for i := 1; i <= 100; i++ {
		mu.Lock()
		state = i
		mu.Unlock()
		o.mark(item{key: "k", channel: "#c", render: render})
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	select {
	case <-o.idleC():
	case <-wctx.Done():
		t.Fatal("outbox never drained")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.posts != 1 {
		t.Errorf("%d posts, want 1", p.posts)
	}
	if len(p.updates) > 10 {
		t.Errorf("%d updates for 100 changes: not coalesced", len(p.updates))
	}
	if got := p.messages["1.000100"]; got != "state 100" {
		t.Errorf("final message = %q, want state 100 (the last state must never be lost)", got)
	}
	if o.snapshot().RateLimited != 3 {
		t.Errorf("rate limits seen = %d, want 3", o.snapshot().RateLimited)
	}
}
