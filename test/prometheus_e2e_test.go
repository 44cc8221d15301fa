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
	mu    sync.Mutex
	value float64
}

func (e *exporter) set(v float64) { e.mu.Lock(); e.value = v; e.mu.Unlock() }

func (e *exporter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(w, "# TYPE pod_memory_percent gauge\npod_memory_percent{namespace=\"staging\",pod=\"api-server-abc123\"} %g\n", e.value)
}

// scraped waits until Prometheus answers the query with want.
func scraped(t *testing.T, promURL string, want float64) {
	t.Helper()
	q := url.Values{"query": {`pod_memory_percent{namespace="staging",pod="api-server-abc123"}`}}
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
		wantRestart int
	}{{"memory drops", true, 0}, {"memory stays high", false, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			exp.set(95)
			scraped(t, prom.URL, 95)
			c := enginetest.NewCluster()
			reg := c.Registry()
			prometheus.Register(reg, prometheus.Config{URL: prom.URL, Queries: map[string]string{
				"podMemoryPercent": `pod_memory_percent{namespace="{{ namespace }}",pod="{{ podName }}"}`,
			}})
			cat, diags := engine.LoadPaths(reg, "../runbooks/high-memory-pod-remediation.yaml")
			if len(diags) > 0 {
				t.Fatal(diags)
			}
			clock := enginetest.NewFakeClock(time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC))
			eng := engine.New(engine.Config{Store: enginetest.NewMemStore(), Registry: reg, Catalog: cat, Clock: clock, Secrets: staticSecrets{"adminToken": "t0ken"}})
			defer eng.Close()
			polled := make(chan struct{}, 16)
			eng.Subscribe(func(e engine.Event) {
				if e.Type == engine.EventStepStarted && e.Step.Name == "verify-memory-after-gc" {
					polled <- struct{}{}
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
			out, err := eng.Wait(ctx, id)
			if err != nil || out != engine.OutcomeSuccess {
				t.Fatalf("outcome %s %v", out, err)
			}
			if n := c.Called("kubernetes.rolloutRestart"); n != tc.wantRestart {
				t.Errorf("restarts = %d, want %d", n, tc.wantRestart)
			}
		})
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
