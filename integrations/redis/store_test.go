package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// storeFactory gives each suite test its own prefix on the server at url.
func storeFactory(url string) enginetest.StoreFactory {
	return func(t *testing.T) func() engine.Store {
		prefix := testPrefix(t)
		return func() engine.Store {
			s, err := NewStore(context.Background(), url, WithPrefix(prefix))
			if err != nil {
				t.Fatalf("NewStore: %v", err)
			}
			return s
		}
	}
}

func TestStoreSuite(t *testing.T) {
	srv := sharedRedis(t)
	enginetest.RunStoreSuite(t, storeFactory(srv.URL(0)))
}

func TestStoreSuiteWithoutCache(t *testing.T) {
	srv := sharedRedis(t)
	enginetest.RunStoreSuite(t, func(t *testing.T) func() engine.Store {
		prefix := testPrefix(t)
		return func() engine.Store {
			s, err := NewStore(context.Background(), srv.URL(1), WithPrefix(prefix), WithSummaryCache(0))
			if err != nil {
				t.Fatalf("NewStore: %v", err)
			}
			return s
		}
	})
}

func newTestStore(t *testing.T, opts ...Option) *Store {
	t.Helper()
	srv := sharedRedis(t)
	s, err := NewStore(context.Background(), srv.URL(0), append([]Option{WithPrefix(testPrefix(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestAppendEnforcesSequence(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	evs := enginetest.Lifecycle("x", "rb", "u", "manual", tBase, engine.OutcomeSuccess)
	if err := s.Append(ctx, evs[1]); !errors.Is(err, ErrSequence) {
		t.Fatalf("first event seq 2: err = %v, want ErrSequence", err)
	}
	if err := s.Append(ctx, evs[0], evs[2]); !errors.Is(err, ErrSequence) {
		t.Fatalf("gap in batch: err = %v, want ErrSequence", err)
	}
	if err := s.Append(ctx, evs[:2]...); err != nil {
		t.Fatal(err)
	}
	other := func(e engine.Event) engine.Event { e.Actor = "someone else"; return e }
	if err := s.Append(ctx, other(evs[1])); !errors.Is(err, ErrSequence) {
		t.Fatalf("duplicate seq: err = %v, want ErrSequence", err)
	}
	if err := s.Append(ctx, other(evs[0])); !errors.Is(err, ErrSequence) {
		t.Fatalf("restart at seq 1: err = %v, want ErrSequence", err)
	}
	// A batch is all or nothing: y is fine, x skips a seq.
	y := enginetest.Lifecycle("y", "rb", "u", "manual", tBase, "")
	if err := s.Append(ctx, y[0], evs[3]); !errors.Is(err, ErrSequence) {
		t.Fatalf("mixed batch: err = %v, want ErrSequence", err)
	}
	if got, _ := s.Events(ctx, "y"); len(got) != 0 {
		t.Fatalf("y has %d events after a failed batch", len(got))
	}
	if _, err := s.Get(ctx, "y"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("y summary after failed batch: %v", err)
	}
	if err := s.Append(ctx, y[0], evs[2]); err != nil {
		t.Fatalf("valid mixed batch: %v", err)
	}
	// Retrying an append that went through succeeds and stores nothing.
	if err := s.Append(ctx, y[0], evs[2]); err != nil {
		t.Fatalf("retried append: %v", err)
	}
	if err := s.Append(ctx, evs[:3]...); err != nil {
		t.Fatalf("retried older events: %v", err)
	}
	changed := evs[2]
	changed.Message = "different"
	if err := s.Append(ctx, changed); !errors.Is(err, ErrSequence) {
		t.Fatalf("different event at a stored seq: err = %v, want ErrSequence", err)
	}
	all, _ := s.ReadFrom(ctx, 0, 100)
	if len(all) != 4 {
		t.Fatalf("log has %d events, want 4", len(all))
	}
	for i, e := range all {
		if e.Pos != uint64(i+1) {
			t.Errorf("event %d pos %d", i, e.Pos)
		}
	}
}

func TestReplicasShareStore(t *testing.T) {
	ctx := context.Background()
	srv := sharedRedis(t)
	prefix := testPrefix(t)
	a, err := NewStore(ctx, srv.URL(0), WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewStore(ctx, srv.URL(0), WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Alternate appends between two stores with their own summary caches:
	// each sees a stale cache every other time and must reload.
	evs := fiveStep("shared", 1)
	for i, e := range evs {
		st := a
		if i%2 == 1 {
			st = b
		}
		if err := st.Append(ctx, e); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	sum, err := a.Get(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	want := engine.Summary{}
	for _, e := range evs {
		want.Apply(e)
	}
	if sum.LastSeq != want.LastSeq || sum.StepsRun != want.StepsRun || sum.Approvals != want.Approvals || sum.Status != engine.StatusFinished {
		t.Fatalf("summary = %+v, want %+v", sum, want)
	}
	// Racing writers of one execution: exactly one wins each seq.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	ev := enginetest.Lifecycle("race", "rb", "u", "manual", tBase, "")
	for i, st := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := ev[0]
			e.Actor = fmt.Sprint("writer", i) // different events: idempotence must not merge them
			errs[i] = st.Append(ctx, e)
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("racing appends of seq 1: errs %v, %v; want exactly one success", errs[0], errs[1])
	}
	if got, _ := a.Events(ctx, "race"); len(got) != 1 {
		t.Fatalf("race has %d events", len(got))
	}
}

// TestHistoryMatchesBruteForce checks paging, intersections and time bounds
// over more executions than one script page.
func TestHistoryMatchesBruteForce(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	rng := rand.New(rand.NewPCG(1, 2))
	sums := map[string]engine.Summary{}
	outcomes := []engine.Outcome{engine.OutcomeSuccess, engine.OutcomeFailure, engine.OutcomeRollback, ""}
	const n = 2500
	var batch []engine.Event
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("h%05d", i)
		// Several executions share a millisecond, some a sub-millisecond.
		start := tBase.Add(time.Duration(rng.IntN(600000)) * time.Millisecond).Add(time.Duration(rng.IntN(3)) * 100 * time.Microsecond)
		evs := enginetest.Lifecycle(id, fmt.Sprintf("rb%d", rng.IntN(5)), fmt.Sprintf("u%d", rng.IntN(7)),
			[]string{"manual", "alert", "schedule"}[rng.IntN(3)], start, outcomes[rng.IntN(len(outcomes))])
		var sum engine.Summary
		for _, e := range evs {
			sum.Apply(e)
		}
		sums[id] = sum
		batch = append(batch, evs...)
		if len(batch) > 400 {
			if err := s.Append(ctx, batch...); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	if err := s.Append(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	mid := tBase.Add(5 * time.Minute).Add(100 * time.Microsecond)
	queries := []engine.HistoryQuery{
		{},
		{Limit: 10},
		{Limit: 1500},
		{Runbook: "rb3"},
		{Outcome: engine.OutcomeFailure, Limit: 20},
		{Runbook: "rb1", Requester: "u2"},
		{Runbook: "rb1", Requester: "u2", TriggerType: "alert", Outcome: engine.OutcomeSuccess},
		{Since: mid},
		{Until: mid},
		{Since: tBase.Add(time.Minute), Until: mid, Runbook: "rb0", Limit: 7},
		{Since: mid, Until: mid},
		{Requester: "nobody"},
	}
	for _, q := range queries {
		got, err := s.History(ctx, q)
		if err != nil {
			t.Fatalf("History(%+v): %v", q, err)
		}
		want := bruteHistory(sums, q)
		if len(got) != len(want) {
			t.Errorf("History(%+v): %d results, want %d", q, len(got), len(want))
			continue
		}
		for i := range got {
			// Within one instant the order is not specified: compare times,
			// then the sets.
			if !got[i].StartedAt.Equal(want[i].StartedAt) {
				t.Errorf("History(%+v)[%d] started %v, want %v", q, i, got[i].StartedAt, want[i].StartedAt)
				break
			}
		}
		if q.Limit == 0 {
			seen := map[string]bool{}
			for _, g := range got {
				seen[g.ExecutionID] = true
			}
			for _, w := range want {
				if !seen[w.ExecutionID] {
					t.Errorf("History(%+v) misses %s", q, w.ExecutionID)
					break
				}
			}
		}
	}
}

func TestReadFromAcrossStores(t *testing.T) {
	// Pos keeps growing across reopen and across executions; ReadFrom pages
	// through the global log with limit, including limit <= 0.
	ctx := context.Background()
	s := newTestStore(t)
	for i := 0; i < 30; i++ {
		if err := s.Append(ctx, fiveStep(fmt.Sprintf("r%d", i), i)...); err != nil {
			t.Fatal(err)
		}
	}
	last, err := s.LastPos(ctx)
	if err != nil || last != 30*14 {
		t.Fatalf("LastPos = %d, %v", last, err)
	}
	got, err := s.ReadFrom(ctx, 100, 0)
	if err != nil || len(got) != 30*14-100 || got[0].Pos != 101 {
		t.Fatalf("ReadFrom(100, 0) = %d events, %v", len(got), err)
	}
	if got[0].Step == nil && got[0].Approval == nil && got[0].Trigger == nil && got[0].Outcome == "" {
		t.Errorf("event details lost: %+v", got[0])
	}
}

func TestNewClientURLs(t *testing.T) {
	good := map[string]string{
		"redis://localhost:6379/2":                                       "*redis.Client",
		"rediss://u:p@localhost:6380/0?dial_timeout=2s":                  "*redis.Client",
		"redis+sentinel://s1:26379,s2/3?master=mymaster":                 "*redis.Client",
		"redis+cluster://[::1]:7000,[::1]:7001":                          "*redis.ClusterClient",
		"redis://s1:26379?master=m&addrs=s2:26379&sentinel_password=x":   "*redis.Client",
		"redis+cluster://n1:7000,n2:7001?pool_size=5&read_timeout=1":     "*redis.ClusterClient",
		"rediss+cluster://u:p@n1:7000?addrs=[::1]:7001&skip_verify=true": "*redis.ClusterClient",
		"redis://n1:7000?addrs=n2:7001,n3:7002":                          "*redis.ClusterClient",
	}
	for u, typ := range good {
		c, err := NewClient(u)
		if err != nil {
			t.Errorf("NewClient(%q): %v", u, err)
			continue
		}
		if got := fmt.Sprintf("%T", c); got != typ {
			t.Errorf("NewClient(%q) is %s, want %s", u, got, typ)
		}
		_ = c.Close()
	}
	bad := []string{
		"http://localhost",
		"redis+sentinel://s1:26379",             // no master
		"redis+cluster://n1:7000/2",             // no databases on cluster
		"redis+cluster://n1:7000?master=x",      // master on cluster
		"redis+sentinel://s1?master=m&bogus=1",  // unknown option
		"redis+sentinel://s1?master=m&db=x",     // bad number
		"redis://localhost:6379/notanumber",     // bad db
		"redis+foo://localhost",                 // unknown mode
		"redis+cluster://n1:7000?pool_size=ten", // bad number
	}
	for _, u := range bad {
		if c, err := NewClient(u); err == nil {
			_ = c.Close()
			t.Errorf("NewClient(%q) succeeded, want error", u)
		}
	}
	if got := clusterSafePrefix("runbookbot:", true); got != "{runbookbot}:" {
		t.Errorf("cluster prefix = %q", got)
	}
	if got := clusterSafePrefix("{x}:", true); got != "{x}:" {
		t.Errorf("tagged prefix changed to %q", got)
	}
	if got := clusterSafePrefix("runbookbot:", false); got != "runbookbot:" {
		t.Errorf("non-cluster prefix changed to %q", got)
	}
}

func TestStoreSuiteOnCluster(t *testing.T) {
	// A one-node cluster owning every slot: enough to prove that all keys of
	// a script share a slot (Redis refuses cross-slot scripts in cluster
	// mode) and that the cluster URL works.
	srv := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	ctx := context.Background()
	c := srv.Client(t)
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	eventually(t, 10*time.Second, "cluster state ok", func() bool {
		info, err := c.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})
	url := "redis+cluster://" + srv.Addr()
	enginetest.RunStoreSuite(t, storeFactory(url))

	s, err := NewStore(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Prefix() != "{runbookbot}:" {
		t.Errorf("cluster prefix %q", s.Prefix())
	}
	if ok, err := s.Acquire(ctx, "e", "me", time.Minute); !ok || err != nil {
		t.Errorf("Acquire on cluster: %v %v", ok, err)
	}
	src := newMemStore()
	if err := src.Append(ctx, fiveStep("c1", 1)...); err != nil {
		t.Fatal(err)
	}
	m := NewMirror(src, s.Client())
	if err := m.Drain(ctx); err != nil {
		t.Fatalf("mirror on cluster: %v", err)
	}
	if n, _ := s.Client().XLen(ctx, m.Stream()).Result(); n != 14 {
		t.Errorf("cluster stream has %d entries", n)
	}
}

func TestStoreOverSentinel(t *testing.T) {
	master := startRedis(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := "sentinel monitor mymaster 127.0.0.1 " + strconv.Itoa(master.port) + " 1\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel, err := launch(&redisServer{bin: redisBinary(t), dir: dir, head: []string{conf, "--sentinel"}})
	if err != nil {
		t.Fatalf("sentinel: %v", err)
	}
	t.Cleanup(sentinel.Kill)
	url := fmt.Sprintf("redis+sentinel://%s/2?master=mymaster", sentinel.Addr())
	enginetest.RunStoreSuite(t, storeFactory(url))
	// The data went to the master's database 2.
	c := goredis.NewClient(&goredis.Options{Addr: master.Addr(), DB: 2, MaintNotificationsConfig: disabledMaint()})
	defer c.Close()
	if n, err := c.DBSize(context.Background()).Result(); err != nil || n == 0 {
		t.Fatalf("master db 2 has %d keys, err %v", n, err)
	}
}
