package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// Run with:
//
//	go test ./integrations/redis -run '^$' -bench . -benchtime 3s
//
// Both benchmarks use the shared loopback redis-server.

// benchEvents returns n events made of whole 14-event executions (the last
// one cut short), ids unique to tag.
func benchEvents(tag string, n int) [][]engine.Event {
	var out [][]engine.Event
	for i := 0; n > 0; i++ {
		evs := fiveStep(fmt.Sprintf("%s-%d", tag, i), i)
		if len(evs) > n {
			evs = evs[:n]
		}
		out = append(out, evs)
		n -= len(evs)
	}
	return out
}

// seed appends executions to s with pipelined script calls, depth per round
// trip. Every execution must be new (seq from 1).
func seed(tb testing.TB, s *Store, execs [][]engine.Event, depth int) {
	tb.Helper()
	ctx := context.Background()
	if err := appendScript.Load(ctx, s.client).Err(); err != nil {
		tb.Fatal(err)
	}
	for lo := 0; lo < len(execs); lo += depth {
		pipe := s.client.Pipeline()
		var cmds []*goredis.Cmd
		for _, evs := range execs[lo:min(lo+depth, len(execs))] {
			groups, order, err := groupEvents(evs)
			if err != nil {
				tb.Fatal(err)
			}
			if err := s.loadBases(ctx, groups, false); err != nil {
				tb.Fatal(err)
			}
			payload, err := encodeEvents(evs)
			if err != nil {
				tb.Fatal(err)
			}
			keys, args := s.appendArgs(groups, evs, order, payload)
			cmds = append(cmds, pipe.EvalSha(ctx, appendScript.Hash(), keys, args...))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatal(err)
		}
		for _, c := range cmds {
			if res, _ := c.Slice(); res[0].(int64) != 1 {
				tb.Fatalf("seed append refused: %v", res)
			}
		}
	}
}

func BenchmarkMirror(b *testing.B) {
	srv := sharedRedis(b)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaintNotificationsConfig: disabledMaint()})
	defer c.Close()
	ctx := context.Background()
	run := func(b *testing.B, src engine.Store, stream string) {
		m := NewMirror(src, c, WithStream(stream))
		b.ResetTimer()
		if err := m.Drain(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got := m.Stats().Shipped; got != uint64(b.N) {
			b.Fatalf("shipped %d of %d", got, b.N)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		c.Unlink(ctx, stream, m.CursorKey())
	}
	b.Run("memsource", func(b *testing.B) {
		src := newMemStore()
		for _, evs := range benchEvents("mm", b.N) {
			if err := src.Append(ctx, evs...); err != nil {
				b.Fatal(err)
			}
		}
		run(b, src, testPrefix(b)+"audit")
	})
	b.Run("redisstore", func(b *testing.B) {
		prefix := testPrefix(b)
		s, err := NewStoreWithClient(ctx, c, WithPrefix(prefix))
		if err != nil {
			b.Fatal(err)
		}
		seed(b, s, benchEvents("rm", b.N), 200)
		run(b, s, prefix+"audit")
		dropPrefix(b, c, prefix)
	})
}

// dropPrefix deletes every key under prefix.
func dropPrefix(tb testing.TB, c *goredis.Client, prefix string) {
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 10000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 10000 {
			c.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		c.Unlink(ctx, batch...)
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
}

const historyExecs = 100000

var (
	historyOnce  sync.Once
	historyStore *Store
)

// historyFixture stores 100,000 executions once per test binary: 20
// runbooks, 50 requesters, 3 trigger types, 4 outcomes (5% unfinished),
// started over 30 days.
func historyFixture(b *testing.B) *Store {
	srv := sharedRedis(b)
	historyOnce.Do(func() {
		ctx := context.Background()
		s, err := NewStore(ctx, srv.URL(2), WithPrefix("bench-history:"))
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := s.client.ZCard(ctx, s.k.byTime()).Result(); n != historyExecs {
			dropPrefix(b, s.client.(*goredis.Client), "bench-history:")
			rng := rand.New(rand.NewPCG(7, 7))
			outcomes := []engine.Outcome{engine.OutcomeSuccess, engine.OutcomeSuccess, engine.OutcomeFailure, engine.OutcomeRollback, engine.OutcomeAborted}
			execs := make([][]engine.Event, 0, historyExecs)
			for i := 0; i < historyExecs; i++ {
				out := outcomes[rng.IntN(len(outcomes))]
				if rng.IntN(20) == 0 {
					out = ""
				}
				start := tBase.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour))))
				execs = append(execs, enginetest.Lifecycle(fmt.Sprintf("hist-%06d", i), fmt.Sprintf("rb-%d", rng.IntN(20)),
					fmt.Sprintf("u-%d", rng.IntN(50)), []string{"manual", "alert", "schedule"}[rng.IntN(3)], start, out))
			}
			t0 := time.Now()
			seed(b, s, execs, 500)
			b.Logf("seeded %d executions in %v", historyExecs, time.Since(t0))
		}
		historyStore = s
	})
	if historyStore == nil {
		b.Fatal("history fixture failed")
	}
	return historyStore
}

func BenchmarkHistory(b *testing.B) {
	s := historyFixture(b)
	ctx := context.Background()
	day := tBase.Add(-10 * 24 * time.Hour)
	queries := []struct {
		name string
		q    engine.HistoryQuery
	}{
		{"latest50", engine.HistoryQuery{Limit: 50}},
		{"runbook50", engine.HistoryQuery{Runbook: "rb-7", Limit: 50}},
		{"runbook+requester+outcome50", engine.HistoryQuery{Runbook: "rb-7", Requester: "u-3", Outcome: engine.OutcomeSuccess, Limit: 50}},
		{"window1h-all", engine.HistoryQuery{Since: day, Until: day.Add(time.Hour)}},
		{"requester-all", engine.HistoryQuery{Requester: "u-3"}},
		{"4filters+window50", engine.HistoryQuery{Runbook: "rb-1", Requester: "u-2", TriggerType: "schedule",
			Outcome: engine.OutcomeFailure, Since: tBase.Add(-20 * 24 * time.Hour), Limit: 50}},
		{"all-100k", engine.HistoryQuery{}},
	}
	for _, tc := range queries {
		b.Run(tc.name, func(b *testing.B) {
			var n int
			for b.Loop() {
				got, err := s.History(ctx, tc.q)
				if err != nil {
					b.Fatal(err)
				}
				n = len(got)
			}
			b.ReportMetric(float64(n), "results")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/query")
		})
	}
}
