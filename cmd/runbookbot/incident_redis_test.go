package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/incident"
	"github.com/runbookbot/runbookbot/integrations/incident/incidenttest"
	"github.com/runbookbot/runbookbot/integrations/incident/pdemu"
	"github.com/runbookbot/runbookbot/integrations/redis"
	"github.com/runbookbot/runbookbot/test/redistest"
)

// The Redis checkpoint behaves as every checkpoint must, on a real
// redis-server: compare-and-set under WATCH, one writer per version.
func TestRedisIncidentCheckpoints(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	incidenttest.RunCheckpointSuite(t, func(t *testing.T) func() incident.Checkpoints {
		n++
		key := fmt.Sprintf("runbookbot:test%d:incident:checkpoint", n)
		return func() incident.Checkpoints {
			c, err := redis.NewClient(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return &redisCheckpoints{client: c, key: key}
		}
	})
}

const quickRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: quick, version: "1.0.0"}
parameters:
  - {name: tag, type: string, required: true}
steps:
  - {name: first, type: log, action: print, params: {message: "first {{ tag }}"}}
  - {name: second, type: log, action: print, params: {message: "second {{ tag }}"}}
`

// pdEmulator is a PagerDuty emulator with the account the tests'
// incident configurations name.
func pdEmulator(t *testing.T) (*pdemu.Server, *httptest.Server) {
	t.Helper()
	emu := pdemu.New(pdemu.Config{Tokens: []string{pdTestToken},
		Users:    []pdemu.User{{ID: "PBOT001", Name: "runbookbot", Email: "runbookbot@example.com"}},
		Services: []pdemu.Service{{ID: "PSHOP01", Name: "shop", PolicyID: "PPOL001", Levels: 3}}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return emu, srv
}

// pdTestToken is the emulated account's REST API token; configurations
// name it as ${env:PD_TOKEN}.
const pdTestToken = "u+pdTokenNeverLogged42"

func incidentConfigFile(t *testing.T, pdURL string) string {
	t.Helper()
	cfg := fmt.Sprintf(`pagerduty:
  url: %s
  token: ${env:PD_TOKEN}
  from: runbookbot@example.com
  serviceId: PSHOP01
default: pagerduty
`, pdURL)
	path := filepath.Join(t.TempDir(), "incident.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var noteMarker = regexp.MustCompile(`\[runbookbot ([^\]]+)\]`)

// Two replicas on one Redis store run the timeline serve wires
// (incidentTimeline: the checkpoint in a Redis hash beside the store)
// at the same time while the engine runs executions: every execution gets
// one incident with each entry once, and the checkpoint is in Redis.
func TestIncidentTimelineReplicasOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	emu, pd := pdEmulator(t)
	t.Setenv("PD_TOKEN", pdTestToken)
	cfgPath := incidentConfigFile(t, pd.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "quick.yaml"), []byte(quickRunbook), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := buildRegistry(registryOptions{})
	cat, diags := engine.LoadPaths(reg, dir)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	store, err := redis.NewStore(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	eng := engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat, Clock: engine.SystemClock{}})
	defer eng.Close()

	var wg sync.WaitGroup
	rctx, stop := context.WithCancel(ctx)
	var timelines []*incident.Timeline
	for _, owner := range []string{"replica-a", "replica-b"} {
		rs, err := redis.NewStore(ctx, srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		tl, err := incidentTimeline(cfgPath, rs, nil, owner, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		// Each replica sees only its own engine's events; here neither
		// does, so both wake on every event of the one engine.
		eng.Subscribe(func(engine.Event) { tl.Notify() })
		timelines = append(timelines, tl)
		wg.Add(1)
		go func() { defer wg.Done(); _ = tl.Run(rctx) }()
	}
	defer func() { stop(); wg.Wait() }()
	// Both timelines start at the head before the first execution.
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := store.Client().Exists(ctx, store.Prefix()+"incident:checkpoint").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no incident checkpoint in Redis")
		}
		time.Sleep(10 * time.Millisecond) // the timelines start asynchronously
	}
	const runs = 6
	for i := range runs {
		id, err := eng.Start(ctx, engine.StartRequest{Runbook: "quick", Params: map[string]any{"tag": fmt.Sprint(i)}, Trigger: engine.TriggerInfo{Type: "manual", TriggeredBy: "alice"}})
		if err != nil {
			t.Fatal(err)
		}
		if o, err := eng.Wait(ctx, id); err != nil || o != engine.OutcomeSuccess {
			t.Fatalf("execution %d: %s %v", i, o, err)
		}
	}
	// start, two steps, outcome; then resolved.
	for {
		done := 0
		for _, inc := range emu.Incidents() {
			if inc.Status == "resolved" && len(emu.Notes(inc.ID)) >= 4 {
				done++
			}
		}
		if done == runs {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d incidents resolved: %+v", done, runs, emu.Incidents())
		}
		time.Sleep(20 * time.Millisecond) // the timelines work asynchronously
	}
	stop()
	wg.Wait()
	incs := emu.Incidents()
	if len(incs) != runs {
		t.Errorf("%d incidents for %d executions", len(incs), runs)
	}
	seen := map[string]int{}
	for _, inc := range incs {
		notes := emu.Notes(inc.ID)
		if len(notes) != 4 {
			t.Errorf("incident %s has %d notes, want 4", inc.Key, len(notes))
		}
		for _, n := range notes {
			seen[noteMarker.FindStringSubmatch(n.Content)[1]]++
		}
	}
	for m, n := range seen {
		if n != 1 {
			t.Errorf("entry %s written %d times", m, n)
		}
	}
	var sent uint64
	for _, tl := range timelines {
		sent += tl.Stats().Sent
	}
	if sent < uint64(runs*6) {
		t.Errorf("the replicas completed %d operations, want at least %d", sent, runs*6)
	}
}
