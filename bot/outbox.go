package bot

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Limits paces what the bot sends. The defaults stay under Slack's limits:
// chat.postMessage about one per second per channel with short bursts,
// chat.update Tier 3 (about 50 per minute).
type Limits struct {
	PostBurst   int
	PostEvery   time.Duration // per channel
	UpdateBurst int
	UpdateEvery time.Duration // workspace-wide
}

// DefaultLimits returns limits a little under Slack's.
func DefaultLimits() Limits {
	return Limits{PostBurst: 3, PostEvery: 1100 * time.Millisecond, UpdateBurst: 10, UpdateEvery: 1300 * time.Millisecond}
}

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
	return &bucket{burst: float64(burst), every: every, tokens: float64(burst), last: time.Now()}
}

// ready returns 0 when a token can be taken now, else how long to wait.
func (b *bucket) ready(now time.Time) time.Duration {
	if now.Before(b.until) {
		return b.until.Sub(now)
	}
	if b.every > 0 {
		b.tokens = min(b.burst, b.tokens+float64(now.Sub(b.last))/float64(b.every))
	}
	b.last = now
	if b.tokens >= 1 || b.every <= 0 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(b.every))
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

// item is one message the outbox keeps in sync with the state it renders.
type item struct {
	key      string
	channel  string
	threadTS func() string
	ts       string
	find     string // block id to look for before posting (after a restart)
	render   func() Message
	oneShot  bool
	queued   bool
	attempts int
	posted   func(channel, ts string)
}

// outbox sends the latest rendering of each dirty message, paced by the
// limits; intermediate states are coalesced, rate limits honoured, final
// states never lost.
type outbox struct {
	p      Platform
	log    *slog.Logger
	limits Limits

	mu      sync.Mutex
	items   map[string]*item
	queue   []*item
	posts   map[string]*bucket
	alias   map[string]string // #name → channel id, learned from posts
	updates *bucket
	wake    chan struct{}
	idle    chan struct{} // closed while the queue is empty
	stats   Stats
}

// Stats counts what the outbox did.
type Stats struct {
	Posts, Updates, RateLimited, Errors int
}

func newOutbox(p Platform, limits Limits, log *slog.Logger) *outbox {
	o := &outbox{p: p, log: log, limits: limits, items: map[string]*item{}, posts: map[string]*bucket{}, alias: map[string]string{},
		updates: newBucket(limits.UpdateBurst, limits.UpdateEvery), wake: make(chan struct{}, 1), idle: make(chan struct{})}
	close(o.idle)
	return o
}

// mark registers (or refreshes) an item and queues it.
func (o *outbox) mark(it item) {
	o.mu.Lock()
	defer o.mu.Unlock()
	cur := o.items[it.key]
	if cur == nil || it.oneShot {
		cp := it
		cur = &cp
		if !it.oneShot {
			o.items[it.key] = cur
		}
	} else if cur.channel == "" {
		cur.channel = it.channel
	}
	if cur.queued {
		return
	}
	cur.queued = true
	o.queue = append(o.queue, cur)
	select {
	case <-o.idle:
		o.idle = make(chan struct{})
	default:
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// acquirePost waits for a post token of channel, for posts made outside the
// queue (the parent a start depends on), so they count against the same
// limit.
func (o *outbox) acquirePost(ctx context.Context, channel string) error {
	for {
		o.mu.Lock()
		b := o.postBucketLocked(channel)
		d := b.ready(time.Now())
		if d == 0 {
			b.take()
			o.mu.Unlock()
			return nil
		}
		o.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (o *outbox) pausePosts(channel string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.postBucketLocked(channel).pause(time.Now(), d)
}

func (o *outbox) lookup(key string) (channel, ts string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if it := o.items[key]; it != nil {
		return it.channel, it.ts
	}
	return "", ""
}

func (o *outbox) forget(prefix string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, it := range o.items {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix && !it.queued {
			delete(o.items, k)
		}
	}
}

// idleC returns a channel closed when nothing is queued.
func (o *outbox) idleC() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.idle
}

func (o *outbox) bucketFor(it *item) *bucket {
	if it.ts != "" {
		return o.updates
	}
	return o.postBucketLocked(it.channel)
}

// postBucketLocked returns the channel's post bucket; a #name and its id
// share one once a post has told the two apart.
func (o *outbox) postBucketLocked(channel string) *bucket {
	if id, ok := o.alias[channel]; ok {
		channel = id
	}
	b := o.posts[channel]
	if b == nil {
		b = newBucket(o.limits.PostBurst, o.limits.PostEvery)
		o.posts[channel] = b
	}
	return b
}

// learn records that a post to channel landed in id.
func (o *outbox) learn(channel, id string) {
	if channel == id || id == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.alias[channel]; ok {
		return
	}
	o.alias[channel] = id
	if b, ok := o.posts[channel]; ok {
		if _, has := o.posts[id]; !has {
			o.posts[id] = b
		}
	}
}

// next takes the first queued item whose bucket has a token, or says how
// long until one will.
func (o *outbox) next(now time.Time) (*item, time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	wait := time.Duration(-1)
	for i, it := range o.queue {
		b := o.bucketFor(it)
		if d := b.ready(now); d > 0 {
			if wait < 0 || d < wait {
				wait = d
			}
			continue
		}
		b.take()
		o.queue = append(o.queue[:i], o.queue[i+1:]...)
		it.queued = false
		return it, 0
	}
	if len(o.queue) == 0 {
		select {
		case <-o.idle:
		default:
			close(o.idle)
		}
	}
	return nil, wait
}

func (o *outbox) run(ctx context.Context) {
	for {
		it, wait := o.next(time.Now())
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
		o.send(ctx, it)
	}
}

func (o *outbox) send(ctx context.Context, it *item) {
	msg := it.render()
	o.mu.Lock()
	channel, ts, find := it.channel, it.ts, it.find
	it.find = ""
	o.mu.Unlock()
	thread := ""
	if it.threadTS != nil {
		thread = it.threadTS()
	}
	var err error
	if ts == "" && find != "" {
		if found, ferr := o.p.FindMessage(ctx, channel, thread, find); ferr == nil {
			ts = found
			o.mu.Lock()
			it.ts = found
			o.mu.Unlock()
		}
	}
	if ts == "" {
		var ch string
		ch, ts, err = o.p.Post(ctx, channel, thread, msg)
		if err == nil {
			o.learn(channel, ch)
			o.mu.Lock()
			it.channel, it.ts = ch, ts
			o.stats.Posts++
			o.mu.Unlock()
			if it.posted != nil {
				it.posted(ch, ts)
			}
		}
	} else {
		err = o.p.Update(ctx, channel, ts, msg)
		if err == nil {
			o.mu.Lock()
			o.stats.Updates++
			o.mu.Unlock()
		}
	}
	if err == nil {
		o.mu.Lock()
		it.attempts = 0
		o.mu.Unlock()
		return
	}
	var rl *RateLimitedError
	o.mu.Lock()
	defer o.mu.Unlock()
	if errors.As(err, &rl) {
		o.stats.RateLimited++
		o.bucketFor(it).pause(time.Now(), rl.RetryAfter)
		o.requeueLocked(it, true)
		return
	}
	o.stats.Errors++
	it.attempts++
	if it.attempts < 3 && ctx.Err() == nil {
		o.log.Warn("chat call failed; will retry", "message", it.key, "err", err)
		o.requeueLocked(it, false)
		return
	}
	o.log.Error("chat call failed; giving up on this message", "message", it.key, "err", err)
}

func (o *outbox) requeueLocked(it *item, front bool) {
	if it.queued {
		return
	}
	it.queued = true
	if front {
		o.queue = append([]*item{it}, o.queue...)
	} else {
		o.queue = append(o.queue, it)
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) snapshot() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stats
}
