package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

const eventsPerExec = 14 // len(fiveStep(...))

// entryKey identifies an event in the stream.
func entryKey(v map[string]any) string { return fmt.Sprint(v["executionId"], "/", v["seq"]) }

// readStream returns every entry of stream, oldest first.
func readStream(t *testing.T, c goredis.UniversalClient, stream string) []goredis.XMessage {
	t.Helper()
	var out []goredis.XMessage
	start := "-"
	for {
		page, err := c.XRangeN(context.Background(), stream, start, "+", 5000).Result()
		if err != nil {
			t.Fatalf("XRANGE: %v", err)
		}
		out = append(out, page...)
		if len(page) < 5000 {
			return out
		}
		start = "(" + page[len(page)-1].ID
	}
}

// checkStream verifies that the stream holds every event of src exactly
// once and in per-execution order.
func checkStream(t *testing.T, c goredis.UniversalClient, stream string, src *memStore) {
	t.Helper()
	msgs := readStream(t, c, stream)
	last, _ := src.LastPos(context.Background())
	if uint64(len(msgs)) != last {
		t.Errorf("stream has %d entries, source %d events", len(msgs), last)
	}
	seen := map[string]bool{}
	lastSeq := map[string]int{}
	var lastPos uint64
	for _, m := range msgs {
		k := entryKey(m.Values)
		if seen[k] {
			t.Fatalf("event %s shipped twice", k)
		}
		seen[k] = true
		id := fmt.Sprint(m.Values["executionId"])
		seq, _ := strconv.Atoi(fmt.Sprint(m.Values["seq"]))
		if seq != lastSeq[id]+1 {
			t.Fatalf("%s: seq %d after %d", id, seq, lastSeq[id])
		}
		lastSeq[id] = seq
		pos, _ := strconv.ParseUint(fmt.Sprint(m.Values["pos"]), 10, 64)
		if pos != lastPos+1 {
			t.Fatalf("pos %d after %d", pos, lastPos)
		}
		lastPos = pos
	}
}

// consumer reads a consumer group and counts what it is given.
type consumer struct {
	c      goredis.UniversalClient
	stream string
	group  string
	mu     sync.Mutex
	counts map[string]int
}

func newConsumer(t *testing.T, c goredis.UniversalClient, stream string) *consumer {
	if err := c.XGroupCreateMkStream(context.Background(), stream, "security", "0").Err(); err != nil {
		t.Fatalf("XGROUP CREATE: %v", err)
	}
	return &consumer{c: c, stream: stream, group: "security", counts: map[string]int{}}
}

// poll reads and acknowledges one batch; it returns how many it got.
func (g *consumer) poll(ctx context.Context) (int, error) {
	res, err := g.c.XReadGroup(ctx, &goredis.XReadGroupArgs{
		Group: g.group, Consumer: "auditor", Streams: []string{g.stream, ">"}, Count: 1000, Block: 20 * time.Millisecond,
	}).Result()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var ids []string
	g.mu.Lock()
	for _, s := range res {
		for _, m := range s.Messages {
			g.counts[entryKey(m.Values)]++
			ids = append(ids, m.ID)
		}
	}
	g.mu.Unlock()
	if len(ids) > 0 {
		if err := g.c.XAck(ctx, g.stream, g.group, ids...).Err(); err != nil {
			return len(ids), err
		}
	}
	return len(ids), nil
}

func (g *consumer) seen() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.counts)
}

// check verifies each of n events was delivered exactly once and nothing is
// left pending.
func (g *consumer) check(t *testing.T, n int) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.counts) != n {
		t.Errorf("consumer group saw %d distinct events, want %d", len(g.counts), n)
	}
	for k, c := range g.counts {
		if c != 1 {
			t.Fatalf("consumer group got %s %d times", k, c)
		}
	}
	p, err := g.c.XPending(context.Background(), g.stream, g.group).Result()
	if err != nil || p.Count != 0 {
		t.Errorf("pending = %+v, %v", p, err)
	}
}

func cursorValue(t *testing.T, c goredis.UniversalClient, m *Mirror) uint64 {
	t.Helper()
	v, err := c.Get(context.Background(), m.CursorKey()).Uint64()
	if err != nil {
		t.Fatalf("cursor: %v", err)
	}
	return v
}

func TestMirrorShipsExecutionsInOrder(t *testing.T) {
	srv := sharedRedis(t)
	c := srv.Client(t)
	stream := testPrefix(t) + "audit"
	src := newMemStore()
	m := NewMirror(src, c, WithStream(stream), WithBatchSize(100), WithPollInterval(50*time.Millisecond))
	group := newConsumer(t, c, stream)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()
	consumed := make(chan error, 1)
	const execs = 1000
	total := execs * eventsPerExec
	go func() {
		for group.seen() < total && ctx.Err() == nil {
			if _, err := group.poll(ctx); err != nil && ctx.Err() == nil {
				consumed <- err
				return
			}
		}
		consumed <- nil
	}()

	// Four producers each drive 250 executions, one event at a time,
	// interleaving their executions as concurrent runs would.
	var wg sync.WaitGroup
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var runs [][]engine.Event
			for i := p; i < execs; i += 4 {
				runs = append(runs, fiveStep(fmt.Sprintf("exec-%04d", i), i))
			}
			for k := 0; k < eventsPerExec; k++ {
				for _, r := range runs {
					if err := src.Append(context.Background(), r[k]); err != nil {
						t.Error(err)
						return
					}
					m.Notify()
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 60*time.Second, "the consumer group to see every event", func() bool { return group.seen() >= total })
	if err := <-consumed; err != nil {
		t.Fatalf("consumer: %v", err)
	}
	eventually(t, 10*time.Second, "lag 0", func() bool { return m.Lag() == 0 })
	cancel()
	if err := <-runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}

	checkStream(t, c, stream, src)
	group.check(t, total)
	if got := cursorValue(t, c, m); got != uint64(total) {
		t.Errorf("cursor = %d, want %d", got, total)
	}
	st := m.Stats()
	if st.Shipped != uint64(total) || st.Errors != 0 || st.Lag != 0 || st.Cursor != uint64(total) || st.Failing {
		t.Errorf("stats = %+v", st)
	}

	// One entry in detail.
	msgs, _ := c.XRangeN(context.Background(), stream, "-", "+", 1).Result()
	v := msgs[0].Values
	if v["type"] != "execution.started" || v["trigger.type"] != "alert" || v["parameters"] == nil || v["time"] == nil {
		t.Errorf("first entry = %v", v)
	}
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v["time"])); err != nil {
		t.Errorf("time %v: %v", v["time"], err)
	}
}

func TestMirrorSurvivesRedisOutage(t *testing.T) {
	// The stream and cursor must survive the restart: append-only file,
	// synced on every write, and the server is killed, not shut down.
	srv := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: 1, DialTimeout: 200 * time.Millisecond,
		MaintNotificationsConfig: disabledMaint()})
	defer c.Close()
	stream := "runbookbot:audit"
	src := newMemStore()
	m := NewMirror(src, c, WithBatchSize(50), WithPollInterval(20*time.Millisecond),
		WithBackoff(Backoff{Initial: 5 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2}))
	group := newConsumer(t, c, stream)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()

	appendExecs := func(from, to int) {
		for i := from; i < to; i++ {
			if err := src.Append(ctx, fiveStep(fmt.Sprintf("o%03d", i), i)...); err != nil {
				t.Error(err)
				return
			}
			m.Notify()
		}
	}
	// Phase 1: Redis up; ship and consume 100 executions.
	appendExecs(0, 100)
	eventually(t, 30*time.Second, "phase 1 shipped", func() bool { return m.Stats().Cursor == 100*eventsPerExec })
	for group.seen() < 100*eventsPerExec {
		if _, err := group.poll(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Phase 2: kill Redis while a producer is appending and the mirror is
	// shipping; the producer keeps going through the outage.
	produced := make(chan struct{})
	go func() { defer close(produced); appendExecs(100, 300) }()
	eventually(t, 30*time.Second, "producer midway", func() bool {
		n, _ := src.LastPos(ctx)
		return n >= 170*eventsPerExec
	})
	srv.Kill()
	eventually(t, 30*time.Second, "the mirror to retry through the outage", func() bool { return m.Stats().Errors >= 3 })
	<-produced
	appendExecs(300, 350) // and more while Redis is still down
	st := m.Stats()
	if !st.Failing || st.Lag == 0 {
		t.Errorf("during outage stats = %+v, want failing with lag", st)
	}

	// Phase 3: Redis comes back with its data; the mirror catches up.
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	total := 350 * eventsPerExec
	eventually(t, 60*time.Second, "the mirror to catch up", func() bool {
		st := m.Stats()
		return st.Cursor == uint64(total) && st.Lag == 0 && !st.Failing
	})
	for group.seen() < total {
		n, err := group.poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 && group.seen() < total {
			t.Fatalf("consumer group stalled at %d of %d", group.seen(), total)
		}
	}
	cancel()
	<-runErr

	checkStream(t, c, stream, src)
	group.check(t, total)
	if got := cursorValue(t, c, m); got != uint64(total) {
		t.Errorf("cursor = %d, want %d", got, total)
	}
	t.Logf("outage: %+v", m.Stats())
}

func TestMirrorsSharingAStreamShipOnce(t *testing.T) {
	srv := sharedRedis(t)
	stream := testPrefix(t) + "audit"
	src := newMemStore()
	for i := 0; i < 200; i++ {
		if err := src.Append(context.Background(), fiveStep(fmt.Sprintf("d%d", i), i)...); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := NewMirror(src, srv.Client(t), WithStream(stream), WithBatchSize(30))
			if err := m.Drain(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	checkStream(t, srv.Client(t), stream, src)
}

func TestMirrorBackoffOnFakeClock(t *testing.T) {
	srv := sharedRedis(t)
	c := srv.Client(t)
	clock := enginetest.NewFakeClock(tBase)
	src := newMemStore()
	src.failReads.Store(3)
	if err := src.Append(context.Background(), fiveStep("b", 1)...); err != nil {
		t.Fatal(err)
	}
	b := Backoff{Initial: 100 * time.Millisecond, Max: 250 * time.Millisecond, Multiplier: 2}
	m := NewMirror(src, c, WithStream(testPrefix(t)+"audit"), WithClock(clock), WithBackoff(b), WithPollInterval(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Run(ctx) }()

	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	// Each failure parks the mirror on a backoff timer: 100ms, 200ms, then
	// 250ms (capped). Nothing is retried before the clock reaches it.
	for i, d := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond} {
		if err := clock.WaitTimers(wctx, 1); err != nil {
			t.Fatalf("retry %d: mirror never waited: %v", i+1, err)
		}
		if got := m.Stats().Errors; got != uint64(i+1) {
			t.Fatalf("after failure %d errors = %d", i+1, got)
		}
		clock.Advance(d - time.Millisecond)
		if clock.Timers() != 1 || m.Stats().Errors != uint64(i+1) {
			t.Fatalf("retry %d came before its %v backoff", i+1, d)
		}
		clock.Advance(time.Millisecond)
	}
	eventually(t, 10*time.Second, "shipping after recovery", func() bool { return m.Stats().Shipped == eventsPerExec })
	if st := m.Stats(); st.Failing || st.Errors != 3 {
		t.Errorf("stats = %+v", st)
	}
	if d := b.Delay(10); d != 250*time.Millisecond {
		t.Errorf("Delay(10) = %v", d)
	}
	if d := (Backoff{Initial: time.Second, Multiplier: 2, Jitter: 0.5}).Delay(1); d < 500*time.Millisecond || d > time.Second {
		t.Errorf("jittered delay %v", d)
	}
}

func TestMirrorNotifyAndPoll(t *testing.T) {
	srv := sharedRedis(t)
	c := srv.Client(t)
	clock := enginetest.NewFakeClock(tBase)
	src := newMemStore()
	stream := testPrefix(t) + "audit"
	m := NewMirror(src, c, WithStream(stream), WithClock(clock), WithPollInterval(time.Hour), WithMaxLen(0))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	xlen := func() int64 { n, _ := c.XLen(ctx, stream).Result(); return n }

	if err := clock.WaitTimers(wctx, 1); err != nil { // parked on the poll timer
		t.Fatal(err)
	}
	if err := src.Append(ctx, fiveStep("n1", 1)...); err != nil {
		t.Fatal(err)
	}
	m.Notify() // ships now, an hour before the poll
	eventually(t, 10*time.Second, "notified events shipped", func() bool { return xlen() == eventsPerExec })
	if err := clock.WaitTimers(wctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := src.Append(ctx, fiveStep("n2", 2)...); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour) // no Notify: the poll finds them
	eventually(t, 10*time.Second, "polled events shipped", func() bool { return xlen() == 2*eventsPerExec })
}

func TestMirrorTrimsStream(t *testing.T) {
	srv := sharedRedis(t)
	c := srv.Client(t)
	src := newMemStore()
	for i := 0; i < 100; i++ {
		if err := src.Append(context.Background(), fiveStep(fmt.Sprintf("m%d", i), i)...); err != nil {
			t.Fatal(err)
		}
	}
	stream := testPrefix(t) + "audit"
	m := NewMirror(src, c, WithStream(stream), WithMaxLen(200))
	if err := m.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	n, _ := c.XLen(context.Background(), stream).Result()
	if n < 200 || n >= 1400 {
		t.Errorf("trimmed stream has %d entries, want about 200", n)
	}
	if got := cursorValue(t, c, m); got != 1400 {
		t.Errorf("cursor %d", got)
	}
}

func TestMirrorFromRedisStore(t *testing.T) {
	// The store itself as source: Lag counts from its LastPos.
	s := newTestStore(t)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if err := s.Append(ctx, fiveStep(fmt.Sprintf("rs%d", i), i)...); err != nil {
			t.Fatal(err)
		}
	}
	m := NewMirror(s, s.Client(), WithStream(s.Prefix()+"audit"), WithBatchSize(50))
	if err := m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Shipped != 280 || st.Head != 280 || st.Lag != 0 {
		t.Errorf("stats = %+v", st)
	}
	if err := s.Append(ctx, fiveStep("late", 99)[:3]...); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.step(ctx); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Shipped != 283 {
		t.Errorf("after more: %+v", st)
	}
}
