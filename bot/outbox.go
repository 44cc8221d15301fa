package bot

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// prio orders what the outbox sends when the budget is short.
type prio int

// Priorities, most urgent first.
const (
	// prioUrgent: a new execution's parent, approval cards, final states,
	// answers to people.
	prioUrgent prio = iota
	// prioNormal: parent progress, escalations, alert replies.
	prioNormal
	// prioStep: step replies; under pressure they are left out (the
	// parent lists every step).
	prioStep
)

// kind is which budget a send uses.
type kind int

const (
	kindPost kind = iota
	kindUpdate
	kindWhisper
)

// bucket is a token bucket on the wall clock (platform limits are real
// time even when the engine runs on a fake clock).
type bucket struct {
	burst  float64
	every  time.Duration
	tokens float64
	last   time.Time
	until  time.Time // paused after a 429
}

func newBucket(burst int, every time.Duration) *bucket {
	return &bucket{burst: float64(max(burst, 1)), every: every, tokens: float64(max(burst, 1)), last: time.Now()}
}

// readyKeeping returns 0 when a token can be taken now while leaving keep
// tokens in the bucket (for more urgent sends), else how long to wait.
func (b *bucket) readyKeeping(now time.Time, keep float64) time.Duration {
	if now.Before(b.until) {
		return b.until.Sub(now)
	}
	if b.every > 0 {
		b.tokens = min(b.burst, b.tokens+max(0, float64(now.Sub(b.last)))/float64(b.every))
	}
	b.last = now
	keep = min(keep, b.burst-1)
	if b.tokens >= 1+keep || b.every <= 0 {
		return 0
	}
	return time.Duration((1 + keep - b.tokens) * float64(b.every))
}

func (b *bucket) take() {
	if b.every > 0 {
		b.tokens--
	}
}

func (b *bucket) pause(now time.Time, d time.Duration) {
	b.until = now.Add(d)
	b.tokens = 0
}

// item is one pending send: the latest rendering of a message, computed
// when it is sent (so intermediate states coalesce).
type item struct {
	key   string
	conv  string
	kind  kind
	prio  prio
	ready bool // false: waits for something else (the parent's reference)
	since time.Time

	send func(ctx context.Context) error
	skip func(ctx context.Context) // left out under pressure (step replies)

	queued   bool
	inflight bool
	again    bool // marked while in flight: send once more
	attempts int
}

// mark asks for an item; fields of a queued item are refreshed.
type mark struct {
	key   string
	conv  string
	kind  kind
	prio  prio
	ready bool
	send  func(ctx context.Context) error
	skip  func(ctx context.Context)
}

// outbox sends the pending renders of one platform by priority, within its
// limits: posts per conversation, edits and whispers platform-wide.
type outbox struct {
	log    *slog.Logger
	limits Limits

	mu       sync.Mutex
	items    map[string]*item
	posts    map[string]*bucket
	alias    map[string]string // #name → conversation id, learned from posts
	updates  *bucket
	whispers *bucket
	wake     chan struct{}
	idle     chan struct{} // closed while nothing is queued or in flight
	stats    Stats
}

// Stats counts what the outbox did.
type Stats struct {
	Sent, Errors, Skipped int
	// RateLimited counts calls the platform refused with a 429.
	RateLimited int
	// Paced counts calls the platform held back before sending them,
	// because it knew they would be rate limited (no 429 was answered).
	Paced int
}

func newOutbox(limits Limits, log *slog.Logger) *outbox {
	if limits.StepPatience <= 0 {
		limits.StepPatience = 5 * time.Second
	}
	o := &outbox{log: log, limits: limits, items: map[string]*item{}, posts: map[string]*bucket{}, alias: map[string]string{},
		updates: newBucket(limits.UpdateBurst, limits.UpdateEvery), whispers: newBucket(20, 700*time.Millisecond),
		wake: make(chan struct{}, 1), idle: make(chan struct{})}
	close(o.idle)
	return o
}

// add queues (or refreshes) items.
func (o *outbox) add(ms ...mark) {
	if len(ms) == 0 {
		return
	}
	o.mu.Lock()
	now := time.Now()
	for _, m := range ms {
		it := o.items[m.key]
		if it == nil {
			it = &item{key: m.key}
			o.items[m.key] = it
		}
		if !it.queued {
			it.since = now
			it.prio = m.prio
		} else {
			it.prio = min(it.prio, m.prio)
		}
		it.conv, it.kind, it.ready, it.send, it.skip = m.conv, m.kind, m.ready, m.send, m.skip
		if it.inflight {
			it.again = true
		}
		it.queued = true
	}
	select {
	case <-o.idle:
		o.idle = make(chan struct{})
	default:
	}
	o.mu.Unlock()
	o.poke()
}

func (o *outbox) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// pending reports whether a key is queued or in flight.
func (o *outbox) pending(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	it := o.items[key]
	return it != nil && (it.queued || it.inflight)
}

// idleC returns a channel closed when nothing is queued or in flight.
func (o *outbox) idleC() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.idle
}

func (o *outbox) bucketLocked(it *item) *bucket {
	switch it.kind {
	case kindUpdate:
		return o.updates
	case kindWhisper:
		return o.whispers
	}
	return o.postBucketLocked(it.conv)
}

// postBucketLocked returns a conversation's post bucket; a #name and its
// id share one once a post has told the two apart.
func (o *outbox) postBucketLocked(conv string) *bucket {
	if id, ok := o.alias[conv]; ok {
		conv = id
	}
	b := o.posts[conv]
	if b == nil {
		b = newBucket(o.limits.PostBurst, o.limits.PostEvery)
		o.posts[conv] = b
	}
	return b
}

// learn records that a post to conv landed in id.
func (o *outbox) learn(conv, id string) {
	if conv == id || id == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.alias[conv]; ok {
		return
	}
	o.alias[conv] = id
	if b, ok := o.posts[conv]; ok {
		if _, has := o.posts[id]; !has {
			o.posts[id] = b
		}
	}
}

// pausePosts stops posting to a conversation for d (after a 429).
func (o *outbox) pause(it *item, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bucketLocked(it).pause(time.Now(), d)
}

// next picks the most urgent ready item whose budget allows it now (oldest
// first within a priority), or a step reply that waited too long (to be
// skipped); else it says how long until a budget frees up.
func (o *outbox) next(now time.Time) (it *item, do func(context.Context) error, skip bool, wait time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	wait = -1
	var best *item
	busy := false
	for _, c := range o.items {
		if !c.queued || c.inflight || !c.ready {
			busy = busy || c.queued || c.inflight
			continue
		}
		busy = true
		if c.prio == prioStep && c.kind == kindPost && c.skip != nil && now.Sub(c.since) > o.limits.StepPatience {
			c.queued = false
			c.inflight = true
			sk := c.skip
			return c, func(ctx context.Context) error { sk(ctx); return nil }, true, 0
		}
		if d := o.bucketLocked(c).readyKeeping(now, o.reserve(c)); d > 0 {
			if wait < 0 || d < wait {
				wait = d
			}
			if c.prio == prioStep && c.kind == kindPost && c.skip != nil {
				if left := o.limits.StepPatience - now.Sub(c.since) + time.Millisecond; wait < 0 || left < wait {
					wait = max(left, time.Millisecond)
				}
			}
			continue
		}
		if best == nil || c.prio < best.prio || (c.prio == best.prio && c.since.Before(best.since)) {
			best = c
		}
	}
	if best != nil {
		o.bucketLocked(best).take()
		best.queued = false
		best.inflight = true
		return best, best.send, false, 0
	}
	if !busy {
		select {
		case <-o.idle:
		default:
			close(o.idle)
		}
	}
	return nil, nil, false, wait
}

// reserve is how many tokens of its budget a send must leave for more
// urgent ones: a new execution's parent, an approval card or a final state
// then never waits behind a step reply that took the last token.
func (o *outbox) reserve(it *item) float64 {
	switch {
	case it.kind == kindPost && it.prio != prioUrgent:
		return 1
	case it.kind == kindUpdate && it.prio == prioStep:
		// Step progress and elapsed-time refreshes leave edits for
		// parents and approval cards.
		return 2
	}
	return 0
}

// run sends until ctx ends.
func (o *outbox) run(ctx context.Context) {
	for {
		it, do, skip, wait := o.next(time.Now())
		if it == nil {
			var timer <-chan time.Time
			var t *time.Timer
			if wait >= 0 {
				t = time.NewTimer(wait)
				timer = t.C
			}
			select {
			case <-ctx.Done():
			case <-o.wake:
			case <-timer:
			}
			if t != nil {
				t.Stop()
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		err := do(ctx)
		o.finish(it, err, skip)
	}
}

// finish settles a send: done, requeued after a rate limit, or retried a
// few times after an error (the view's sweep re-renders what still lags).
func (o *outbox) finish(it *item, err error, skipped bool) {
	var rl *RateLimitedError
	if errors.As(err, &rl) {
		o.pause(it, rl.RetryAfter)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	it.inflight = false
	switch {
	case errors.Is(err, errStale):
		// Queued by a view session that has ended; another replica (or
		// the next session) shows it.
		it.again = false
	case skipped:
		o.stats.Skipped++
	case err == nil:
		o.stats.Sent++
		it.attempts = 0
	case rl != nil:
		if rl.Predicted {
			o.stats.Paced++
		} else {
			o.stats.RateLimited++
		}
		it.queued = true
	default:
		o.stats.Errors++
		it.attempts++
		if it.attempts < 3 {
			o.log.Warn("chat call failed; will retry", "message", it.key, "err", err)
			it.queued = true
		} else {
			o.log.Error("chat call failed; the view's sweep will try again later", "message", it.key, "err", err)
			it.attempts = 0
		}
	}
	if it.again {
		it.again = false
		it.queued = true
	}
	if !it.queued {
		delete(o.items, it.key)
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// queued counts the sends waiting or in flight.
func (o *outbox) queued() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, it := range o.items {
		if it.queued || it.inflight {
			n++
		}
	}
	return n
}

func (o *outbox) snapshot() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stats
}
