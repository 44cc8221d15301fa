package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/integrations/prometheus"
	"github.com/runbookbot/runbookbot/test/promtest"
)

// exporter serves pod_memory_percent for one pod; the test moves it.
type exporter struct {
	mu        sync.Mutex
	value     float64
	errorRate float64
}

func (e *exporter) set(v float64) { e.mu.Lock(); e.value = v; e.mu.Unlock() }

func (e *exporter) setErrorRate(v float64) { e.mu.Lock(); e.errorRate = v; e.mu.Unlock() }

func (e *exporter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(w, "# TYPE pod_memory_percent gauge\npod_memory_percent{namespace=\"staging\",pod=\"api-server-abc123\"} %g\n", e.value)
	fmt.Fprintf(w, "# TYPE http_error_rate_percent gauge\nhttp_error_rate_percent{namespace=\"staging\",deployment=\"api-server\"} %g\n", e.errorRate)
}

const (
	memoryQuery    = `pod_memory_percent{namespace="staging",pod="api-server-abc123"}`
	errorRateQuery = `http_error_rate_percent{namespace="staging",deployment="api-server"}`
)

// scraped waits until Prometheus answers the memory query with want.
func scraped(t *testing.T, promURL string, want float64) {
	t.Helper()
	scrapedQuery(t, promURL, memoryQuery, want)
}

// scrapedQuery waits until Prometheus answers query with want.
func scrapedQuery(t *testing.T, promURL, query string, want float64) {
	t.Helper()
	q := url.Values{"query": {query}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(promURL + "/api/v1/query?" + q.Encode())
		if err == nil {
			var r struct {
				Data struct {
					Result []struct {
						Value [2]any `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if len(r.Data.Result) == 1 && r.Data.Result[0].Value[1] == fmt.Sprint(want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus never scraped %v", want)
		}
		time.Sleep(50 * time.Millisecond) // waiting on Prometheus's scrape loop
	}
}

// The seed's verify-memory-after-gc step against a real Prometheus scraping
// an exporter: memory drops → the runbook completes early; memory stays
// high → the wait times out and the restart runs.
func TestSeedMemoryConditionAgainstPrometheus(t *testing.T) {
	exp := &exporter{value: 95}
	ts := httptest.NewServer(exp)
	defer ts.Close()
	prom := promtest.Start(t, strings.TrimPrefix(ts.URL, "http://"))
	scraped(t, prom.URL, 95)

	for _, tc := range []struct {
		name        string
		drop        bool
		errorRate   float64
		wantRestart int
		want        engine.Outcome
	}{
		{"memory drops", true, 0.5, 0, engine.OutcomeSuccess},
		{"memory stays high", false, 0.5, 1, engine.OutcomeSuccess},
		// The restart "worked" but errors stay above 5% for the whole
		// 5-minute watch: the rollback procedure runs.
		{"errors stay high after the restart", false, 9, 1, engine.OutcomeRollback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp.set(95)
			exp.setErrorRate(tc.errorRate)
			scraped(t, prom.URL, 95)
			scrapedQuery(t, prom.URL, errorRateQuery, tc.errorRate)
			c := enginetest.NewCluster()
			reg := c.Registry()
			prometheus.Register(reg, prometheus.Config{URL: prom.URL, Queries: map[string]string{
				"podMemoryPercent": `pod_memory_percent{namespace="{{ namespace }}",pod="{{ podName }}"}`,
				"errorRate":        `http_error_rate_percent{namespace="{{ namespace }}",deployment="{{ podName | extractDeployment }}"}`,
			}})
			cat, diags := engine.LoadPaths(reg, "../runbooks/high-memory-pod-remediation.yaml")
			if len(diags) > 0 {
				t.Fatal(diags)
			}
			clock := enginetest.NewFakeClock(time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC))
			store := enginetest.NewMemStore()
			eng := engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat, Clock: clock, Secrets: staticSecrets{"adminToken": "t0ken"}})
			defer eng.Close()
			polled := make(chan struct{}, 16)
			watched := make(chan engine.Event, 1000)
			eng.Subscribe(func(e engine.Event) {
				if e.Type == engine.EventStepStarted && e.Step.Name == "verify-memory-after-gc" {
					polled <- struct{}{}
				}
				if e.Watch != nil {
					watched <- e
				}
			})
			id, err := eng.Start(context.Background(), engine.StartRequest{Runbook: "high-memory-pod-remediation",
				Params: map[string]any{"namespace": "staging", "podName": "api-server-abc123"}})
			if err != nil {
				t.Fatal(err)
			}
			<-polled
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := clock.WaitTimers(ctx, 2); err != nil { // first poll saw 95
				t.Fatal(err)
			}
			if tc.drop {
				exp.set(70)
				scraped(t, prom.URL, 70)
				clock.Advance(10 * time.Second)
			} else {
				clock.Advance(60 * time.Second)
			}
			out, err := waitThroughWatch(ctx, eng, clock, id)
			if err != nil || out != tc.want {
				evs, _ := store.Events(context.Background(), id)
				for _, e := range evs {
					t.Logf("%s %s %s", e.Type, e.Message, e.Time)
				}
				t.Fatalf("outcome %s %v, want %s", out, err, tc.want)
			}
			if n := c.Called("kubernetes.rolloutRestart"); n != tc.wantRestart {
				t.Errorf("restarts = %d, want %d", n, tc.wantRestart)
			}
			var checks []*engine.WatchRecord
			for len(watched) > 0 {
				if e := <-watched; e.Type == engine.EventWatchCheck && e.Watch.Condition == "metrics.errorRate > 5%" {
					checks = append(checks, e.Watch)
				}
			}
			switch {
			case tc.wantRestart == 0:
				// onSuccess: complete ends the runbook before any change:
				// nothing to watch.
			case tc.want == engine.OutcomeRollback:
				if len(checks) == 0 || !checks[len(checks)-1].Fired || c.Called("kubernetes.rolloutUndo") != 1 {
					t.Errorf("errorRate checks %+v, undo calls %d", checks, c.Called("kubernetes.rolloutUndo"))
				}
			default:
				for _, ch := range checks {
					if ch.Error != "" || ch.Held {
						t.Errorf("errorRate check against Prometheus: %+v", ch)
					}
				}
			}
		})
	}
}

// waitThroughWatch waits for the execution, moving the fake clock by ten
// seconds each time it waits on a timer (the post-change watch's checks).
func waitThroughWatch(ctx context.Context, eng *engine.Engine, clock *enginetest.FakeClock, id string) (engine.Outcome, error) {
	type result struct {
		out engine.Outcome
		err error
	}
	done := make(chan result, 1)
	wctx, finished := context.WithCancel(ctx)
	defer finished()
	go func() {
		out, err := eng.Wait(ctx, id)
		done <- result{out, err}
		finished()
	}()
	for {
		if clock.WaitTimers(wctx, 1) == nil {
			clock.Advance(10 * time.Second)
			continue
		}
		r := <-done
		return r.out, r.err
	}
}

type staticSecrets map[string]string

func (s staticSecrets) Secret(_ context.Context, name string) (any, error) {
	v, ok := s[name]
	if !ok {
		return nil, fmt.Errorf("no secret %s", name)
	}
	return v, nil
}
