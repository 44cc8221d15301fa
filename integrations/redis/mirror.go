package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/runbookbot/runbookbot/engine"
)

// Mirror defaults.
const (
	DefaultAuditStream  = DefaultPrefix + "audit"
	DefaultAuditMaxLen  = 300000 // about 30 days at 10,000 events a day
	DefaultMirrorBatch  = 2048
	DefaultPollInterval = time.Second
	DefaultLagWarning   = 10000
)

// PosReporter is implemented by stores that can tell the highest Pos they
// assigned (as *Store does). When a Mirror's source implements it, Lag
// counts every event not yet shipped; otherwise only those already read.
type PosReporter interface {
	LastPos(ctx context.Context) (uint64, error)
}

// Backoff is the retry schedule after a failure: Initial, then multiplied by
// Multiplier after each further failure, capped at Max. Jitter (0 to 1)
// spreads each delay randomly by up to that fraction downwards.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

// DefaultBackoff retries after 100ms, doubling up to 30s, with 10% jitter.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, Jitter: 0.1}

// Delay is the wait before retry number attempt (1 for the first retry).
func (b Backoff) Delay(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	mult := b.Multiplier
	if mult < 1 {
		mult = 1
	}
	d := float64(b.Initial) * math.Pow(mult, float64(attempt-1))
	if b.Max > 0 && d > float64(b.Max) {
		d = float64(b.Max)
	}
	if b.Jitter > 0 {
		d -= d * math.Min(b.Jitter, 1) * rand.Float64()
	}
	return time.Duration(d)
}

// MirrorOption configures a Mirror.
type MirrorOption func(*Mirror)

// WithStream sets the audit stream key (default "runbookbot:audit"). The
// cursor key is derived from it unless WithCursorKey is given.
func WithStream(key string) MirrorOption { return func(m *Mirror) { m.stream = key } }

// WithCursorKey sets the key holding the last shipped Pos (default
// "{<stream>}:cursor", which shares the stream's Cluster hash slot).
func WithCursorKey(key string) MirrorOption { return func(m *Mirror) { m.cursorKey = key } }

// WithMaxLen sets the approximate stream length kept (XADD MAXLEN ~ n);
// 0 disables trimming. Default 300,000.
func WithMaxLen(n int64) MirrorOption { return func(m *Mirror) { m.maxLen = n } }

// WithBatchSize sets how many events one ReadFrom asks for, and so one
// transaction ships (default 2048).
func WithBatchSize(n int) MirrorOption { return func(m *Mirror) { m.batch = n } }

// WithPollInterval sets how often Run looks for new events when nobody
// calls Notify (default 1s).
func WithPollInterval(d time.Duration) MirrorOption { return func(m *Mirror) { m.poll = d } }

// WithBackoff sets the retry schedule (default DefaultBackoff).
func WithBackoff(b Backoff) MirrorOption { return func(m *Mirror) { m.backoff = b } }

// WithClock sets the clock behind poll and backoff waits (default
// engine.SystemClock).
func WithClock(c engine.Clock) MirrorOption { return func(m *Mirror) { m.clock = c } }

// WithMirrorLogger sets the logger (default slog.Default()).
func WithMirrorLogger(l *slog.Logger) MirrorOption { return func(m *Mirror) { m.log = l } }

// WithLagWarning sets the lag above which Run logs a warning, at most once
// a minute (default 10,000 events).
func WithLagWarning(n uint64) MirrorOption { return func(m *Mirror) { m.lagWarn = n } }

// WithFlushOnStop makes Run, once its context ends, go on shipping what the
// source holds for up to d (see Flush), so that a clean shutdown leaves the
// stream complete; what it could not ship is logged, and shipped by the
// next mirror on the same stream.
func WithFlushOnStop(d time.Duration) MirrorOption { return func(m *Mirror) { m.stopFlush = d } }

// Mirror ships the events of an engine.Store to a Redis Stream for audit,
// one entry per event (see AuditFields), in Pos order and therefore in
// per-execution order.
//
// The last shipped Pos is kept in Redis next to the stream (see CursorKey).
// A batch is shipped as WATCH cursor, GET cursor, then MULTI, one XADD
// MAXLEN ~ per event, SET cursor, EXEC: the entries and the cursor move
// together or not at all, and EXEC does nothing if the cursor changed after
// it was checked. So a restart, a reply lost to a network failure, or a
// second mirror on the same stream neither loses nor duplicates an entry:
// the mirror rereads the cursor and carries on from there. If Redis itself
// loses data (no persistence), the cursor goes back with the stream and the
// lost entries are shipped again. (A Lua script would give the same
// guarantee, but costs Redis about twice the CPU per entry.)
//
// While a batch is being applied the next one is read and encoded, so the
// source, the encoding and Redis work in parallel.
type Mirror struct {
	src       engine.Store
	client    goredis.UniversalClient
	stream    string
	cursorKey string
	maxLen    int64
	batch     int
	poll      time.Duration
	backoff   Backoff
	clock     engine.Clock
	log       *slog.Logger
	lagWarn   uint64
	stopFlush time.Duration

	wake chan struct{}

	mu          sync.Mutex // one shipping step at a time
	cursor      uint64
	cursorKnown bool
	lastWarn    time.Time
	ahead       chan readResult // batch being read ahead, or nil

	shipped atomic.Uint64
	errs    atomic.Uint64
	cur     atomic.Uint64
	head    atomic.Uint64
	failing atomic.Bool
}

// NewMirror makes a mirror from src to the Redis behind client. Start it
// with Run.
func NewMirror(src engine.Store, client goredis.UniversalClient, opts ...MirrorOption) *Mirror {
	m := &Mirror{
		src: src, client: client,
		stream: DefaultAuditStream, maxLen: DefaultAuditMaxLen,
		batch: DefaultMirrorBatch,
		poll:  DefaultPollInterval, backoff: DefaultBackoff,
		clock: engine.SystemClock{}, log: slog.Default(), lagWarn: DefaultLagWarning,
		wake: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(m)
	}
	if m.cursorKey == "" {
		if hasHashTag(m.stream) {
			m.cursorKey = m.stream + ":cursor"
		} else {
			m.cursorKey = "{" + m.stream + "}:cursor"
		}
	}
	m.batch = max(m.batch, 1)
	if m.poll <= 0 {
		m.poll = DefaultPollInterval
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	return m
}

// Stream returns the audit stream key; CursorKey the key of the cursor.
func (m *Mirror) Stream() string { return m.stream }

// CursorKey returns the key holding the last shipped Pos.
func (m *Mirror) CursorKey() string { return m.cursorKey }

// Notify wakes Run to ship newly appended events now rather than at the next
// poll. It never blocks.
func (m *Mirror) Notify() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// MirrorStats are the mirror's counters, for metrics and logs.
type MirrorStats struct {
	Shipped uint64 // events this process shipped
	Errors  uint64 // failed attempts (reading the source or writing Redis)
	Cursor  uint64 // last shipped Pos, as last known
	Head    uint64 // highest Pos known in the source
	Lag     uint64 // Head - Cursor
	Failing bool   // the last attempt failed
}

// Stats returns the current counters.
func (m *Mirror) Stats() MirrorStats {
	return MirrorStats{
		Shipped: m.shipped.Load(), Errors: m.errs.Load(),
		Cursor: m.cur.Load(), Head: m.head.Load(), Lag: m.Lag(),
		Failing: m.failing.Load(),
	}
}

// Lag returns how many events are known to be in the source but not yet in
// the stream.
func (m *Mirror) Lag() uint64 {
	c, h := m.cur.Load(), m.head.Load()
	if h <= c {
		return 0
	}
	return h - c
}

// Run ships events until ctx ends, and returns ctx's error. After shipping
// it looks again at once; when caught up it waits for Notify or the poll
// interval. Failures are counted, logged and retried with backoff; no event
// is skipped. With WithFlushOnStop it flushes before returning.
func (m *Mirror) Run(ctx context.Context) error {
	defer m.flushOnStop(ctx)
	attempt := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, more, err := m.step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			attempt++
			m.errs.Add(1)
			m.failing.Store(true)
			d := m.backoff.Delay(attempt)
			m.log.Warn("audit mirror: shipping failed, will retry",
				"stream", m.stream, "err", err, "attempt", attempt, "retryIn", d, "lag", m.Lag())
			if !m.wait(ctx, d, false) {
				return ctx.Err()
			}
			continue
		}
		if attempt > 0 {
			m.log.Info("audit mirror: recovered", "stream", m.stream, "failedAttempts", attempt, "lag", m.Lag())
			attempt = 0
			m.failing.Store(false)
		}
		if n > 0 {
			m.warnLag()
		}
		if more {
			continue
		}
		if !m.wait(ctx, m.poll, true) {
			return ctx.Err()
		}
	}
}

// Drain ships everything the source holds now and returns; it fails on the
// first error instead of retrying. Tests, benchmarks and shutdown use it.
func (m *Mirror) Drain(ctx context.Context) error {
	for {
		_, more, err := m.step(ctx)
		if err != nil {
			m.errs.Add(1)
			return err
		}
		if !more {
			return nil
		}
	}
}

// Flush ships everything the source holds now, retrying failures with the
// mirror's backoff until the stream has caught up or ctx ends. On failure
// the error says how far behind the stream was left. Shutdowns and one-off
// commands use it with a deadline.
func (m *Mirror) Flush(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := m.Drain(ctx)
		if err == nil {
			return nil
		}
		m.failing.Store(true)
		if ctx.Err() != nil || !m.wait(ctx, m.backoff.Delay(attempt), false) {
			return fmt.Errorf("audit stream %s left %s behind: %w", m.stream, m.behind(), err)
		}
	}
}

// behind describes the lag for an error message.
func (m *Mirror) behind() string {
	if m.head.Load() == 0 {
		return "an unknown number of events"
	}
	return fmt.Sprintf("%d events", m.Lag())
}

// flushOnStop is Run's last act with WithFlushOnStop.
func (m *Mirror) flushOnStop(ctx context.Context) {
	if m.stopFlush <= 0 {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.stopFlush)
	defer cancel()
	if err := m.Flush(fctx); err != nil {
		m.log.Warn("audit mirror: not everything was shipped before stopping; the next start ships the rest",
			"stream", m.stream, "err", err, "lag", m.Lag())
		return
	}
	m.log.Info("audit mirror: flushed before stopping", "stream", m.stream, "cursor", m.cur.Load())
}

// wait blocks for d on the clock, or until Notify when wakeable. It returns
// false when ctx ended.
func (m *Mirror) wait(ctx context.Context, d time.Duration, wakeable bool) bool {
	t := m.clock.NewTimer(d)
	defer t.Stop()
	var wake chan struct{}
	if wakeable {
		wake = m.wake
	}
	select {
	case <-t.C():
		return true
	case <-wake:
		return true
	case <-ctx.Done():
		return false
	}
}

func (m *Mirror) warnLag() {
	lag := m.Lag()
	if m.lagWarn == 0 || lag < m.lagWarn {
		return
	}
	now := m.clock.Now()
	m.mu.Lock()
	due := m.lastWarn.IsZero() || now.Sub(m.lastWarn) >= time.Minute
	if due {
		m.lastWarn = now
	}
	m.mu.Unlock()
	if due {
		m.log.Warn("audit mirror: behind", "stream", m.stream, "lag", lag, "cursor", m.cur.Load())
	}
}

// step reads one batch from the source and ships it in one transaction.
// It returns how many events it shipped and whether there
// may be more to do right away.
func (m *Mirror) step(ctx context.Context) (shipped int, more bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if pr, ok := m.src.(PosReporter); ok {
		if h, err := pr.LastPos(ctx); err == nil {
			m.raiseHead(h)
		}
	}
	if !m.cursorKnown {
		c, err := m.client.Get(ctx, m.cursorKey).Uint64()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return 0, false, fmt.Errorf("read cursor: %w", err)
		}
		m.cursor, m.cursorKnown = c, true
		m.cur.Store(c)
	}
	evs, fields, err := m.read(ctx, m.cursor)
	if err != nil {
		return 0, false, fmt.Errorf("read source: %w", err)
	}
	if len(evs) == 0 {
		return 0, false, nil
	}
	prev := m.cursor
	for _, e := range evs {
		if e.Pos <= prev {
			return 0, false, fmt.Errorf("source returned pos %d after %d", e.Pos, prev)
		}
		prev = e.Pos
	}
	m.raiseHead(prev)
	if len(evs) == m.batch {
		// Probably more to come: read and encode the next batch while
		// Redis applies this one.
		m.readAhead(ctx, prev)
	}

	if err := m.ship(ctx, fields, prev); err != nil {
		// The transaction may or may not have applied: reread the cursor.
		m.cursorKnown = false
		if errors.Is(err, errCursorMoved) {
			// Someone else moved the cursor (another mirror, or our
			// earlier batch whose reply was lost): continue from theirs.
			m.log.Debug("audit mirror: cursor moved elsewhere", "stream", m.stream, "expected", m.cursor)
			return 0, true, nil
		}
		return 0, false, fmt.Errorf("ship to %s: %w", m.stream, err)
	}
	m.cursor = prev
	m.cur.Store(prev)
	m.shipped.Add(uint64(len(evs)))
	return len(evs), true, nil
}

var errCursorMoved = errors.New("cursor moved")

// ship adds one entry per event and sets the cursor to upto in one
// MULTI/EXEC transaction, under WATCH of the cursor after checking that it
// still is m.cursor: if anyone moves it in between, EXEC does nothing.
func (m *Mirror) ship(ctx context.Context, fields [][]string, upto uint64) error {
	err := m.client.Watch(ctx, func(tx *goredis.Tx) error {
		cur, err := tx.Get(ctx, m.cursorKey).Uint64()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		if cur != m.cursor {
			return errCursorMoved
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			for _, f := range fields {
				p.XAdd(ctx, &goredis.XAddArgs{Stream: m.stream, MaxLen: max(m.maxLen, 0), Approx: true, Values: f})
			}
			p.Set(ctx, m.cursorKey, strconv.FormatUint(upto, 10), 0)
			return nil
		})
		return err
	}, m.cursorKey)
	if errors.Is(err, goredis.TxFailedErr) {
		return errCursorMoved
	}
	return err
}

func (m *Mirror) raiseHead(h uint64) {
	for {
		old := m.head.Load()
		if h <= old || m.head.CompareAndSwap(old, h) {
			return
		}
	}
}

// readResult is a batch read ahead of time, with its entries' fields.
type readResult struct {
	after  uint64
	evs    []engine.Event
	fields [][]string
	err    error
}

// read returns the batch after the given Pos and its entries' fields, from
// the read-ahead when it was for that Pos (events at given positions never
// change, so a batch read earlier is still right) and from the source
// otherwise.
func (m *Mirror) read(ctx context.Context, after uint64) ([]engine.Event, [][]string, error) {
	if m.ahead != nil {
		r := <-m.ahead
		m.ahead = nil
		if r.after == after && r.err == nil && len(r.evs) > 0 {
			return r.evs, r.fields, nil
		}
	}
	r := m.readBatch(ctx, after)
	return r.evs, r.fields, r.err
}

func (m *Mirror) readBatch(ctx context.Context, after uint64) readResult {
	evs, err := m.src.ReadFrom(ctx, after, m.batch)
	if err != nil {
		return readResult{after: after, err: err}
	}
	fields := make([][]string, len(evs))
	for i, e := range evs {
		fields[i] = AuditFields(e)
	}
	return readResult{after, evs, fields, nil}
}

// readAhead starts reading the batch after the given Pos.
func (m *Mirror) readAhead(ctx context.Context, after uint64) {
	ch := make(chan readResult, 1)
	m.ahead = ch
	go func() { ch <- m.readBatch(ctx, after) }()
}
