package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/test/promtest"
)

// driftRunbook names a health endpoint (HEALTH) and two metrics.
const driftRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata:
  name: shop-health
  version: "1.0.0"
parameters:
  - name: namespace
    type: string
    default: shop
steps:
  - name: health
    type: http
    action: get
    params:
      url: "HEALTH"
  - name: queue-drained
    type: wait
    action: until
    params:
      timeout: 1m
      condition: "metrics.queueDepth < 100"
  - name: announce
    type: log
    action: print
    condition: "metrics.checkoutUp == 1"
    params:
      message: "shop healthy"
`

// Lines of driftRunbook's targets.
const (
	healthLine = 15 // url
	queueLine  = 21 // condition: metrics.queueDepth
)

// switchable answers 200, or 503 when down.
type switchable struct{ down atomic.Bool }

func (s *switchable) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if s.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

// shopExporter always serves checkout_up and queue_depth only when on.
type shopExporter struct {
	mu    sync.Mutex
	queue bool
}

func (e *shopExporter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintln(w, "# TYPE checkout_up gauge\ncheckout_up{namespace=\"shop\"} 1")
	if e.queue {
		fmt.Fprintln(w, "# TYPE queue_depth gauge\nqueue_depth{namespace=\"shop\"} 3")
	}
}

func (e *shopExporter) setQueue(on bool) { e.mu.Lock(); e.queue = on; e.mu.Unlock() }

func writeDriftRunbook(t *testing.T, dir, healthURL string) string {
	t.Helper()
	return writeFile(t, dir, "shop-health.yaml", strings.Replace(driftRunbook, "HEALTH", healthURL, 1))
}

// `runbookbot drift` against a real Prometheus scraping an exporter and a
// real HTTP endpoint: a metric whose query returns no series and a health
// endpoint answering 503 are drift at their own lines (exit 1); once the
// series is scraped and the endpoint answers, no drift (exit 0); an
// endpoint that is gone does not answer.
func TestDriftCommandAgainstPrometheusAndHTTP(t *testing.T) {
	exp := &shopExporter{}
	expSrv := httptest.NewServer(exp)
	defer expSrv.Close()
	prom := promtest.Start(t, strings.TrimPrefix(expSrv.URL, "http://"))
	health := &switchable{}
	health.down.Store(true)
	healthSrv := httptest.NewServer(health)
	defer healthSrv.Close()

	dir := t.TempDir()
	file := writeDriftRunbook(t, dir, healthSrv.URL+"/healthz")
	cfg := writeFile(t, t.TempDir(), "metrics.yaml", fmt.Sprintf(`url: %s
queries:
  queueDepth: 'queue_depth{namespace="{{ namespace }}"}'
  checkoutUp: 'checkout_up{namespace="{{ namespace }}"}'
`, prom.URL))
	t.Setenv("RUNBOOKBOT_METRICS_CONFIG", cfg)
	t.Setenv("PROMETHEUS_URL", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))

	// checkout_up must be in Prometheus before its absence could be blamed
	// on the scrape.
	scrapedQuery(t, prom.URL, `checkout_up{namespace="shop"}`)
	code, out, errs := cli(t, "", "drift", "--runbooks", dir)
	want := []string{
		fmt.Sprintf("%s:%d:", file, healthLine) + `12: runbook shop-health: health endpoint ` + healthSrv.URL + `/healthz answers 503`,
		fmt.Sprintf("%s:%d:", file, queueLine) + `18: runbook shop-health: metric queueDepth: its query returns no series`,
	}
	if code != exitFailure || strings.TrimSpace(out) != strings.Join(want, "\n") {
		t.Fatalf("drift = %d\n%s\nwant exit %d and\n%s\nstderr: %s", code, out, exitFailure, strings.Join(want, "\n"), errs)
	}

	exp.setQueue(true)
	health.down.Store(false)
	scrapedQuery(t, prom.URL, `queue_depth{namespace="shop"}`)
	code, out, errs = cli(t, "", "drift", "--runbooks", dir, "-v")
	if code != exitOK || !strings.Contains(out, "no drift in 1 runbook(s)") {
		t.Fatalf("with the series scraped and the endpoint up: %d\n%s\n%s", code, out, errs)
	}

	healthSrv.Close()
	code, out, _ = cli(t, "", "drift", "--runbooks", dir, "--json")
	if code != exitFailure || !strings.Contains(out, `"kind": "http"`) || !strings.Contains(out, "does not answer") ||
		!strings.Contains(out, `"line": `+strconv.Itoa(healthLine)) {
		t.Fatalf("with the endpoint gone: %d\n%s", code, out)
	}
}

// scrapedQuery waits until Prometheus has a series for query.
func scrapedQuery(t *testing.T, promURL, query string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, body := get(t, promURL+"/api/v1/query?query="+url.QueryEscape(query))
		if st == http.StatusOK && strings.Contains(body, `"result":[{`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus never scraped %s: %s", query, body)
		}
		time.Sleep(100 * time.Millisecond) // Prometheus's scrape loop, in another process
	}
}

// serve's periodic drift check posts the report to
// RUNBOOKBOT_DRIFT_CHANNEL when the findings change, and only then, and
// exports runbook_drift_findings. The channel here is a notification
// webhook (RUNBOOKBOT_NOTIFY_CONFIG) into the workspace's #ops.
func TestServePostsDriftWhenItChanges(t *testing.T) {
	health := &switchable{}
	healthSrv := httptest.NewServer(health)
	defer healthSrv.Close()
	// Only the health step: without Prometheus the metric steps do not load.
	httpOnly, _, _ := strings.Cut(driftRunbook, "  - name: queue-drained")
	h := newE2E(t, false, writeFile(t, t.TempDir(), "shop-health.yaml", strings.Replace(httpOnly, "HEALTH", healthSrv.URL+"/healthz", 1)))
	h.stop()
	file := filepath.Join(h.opts.runbooks, "shop-health.yaml") // where serve loads it from
	notifyCfg := writeFile(t, t.TempDir(), "notify.yaml", fmt.Sprintf(`webhooks:
  - name: ops
    url: %s
    body: '{"text": {{ message | json }}}'
`, h.emu.AddWebhook("", "ops")))
	t.Setenv("RUNBOOKBOT_NOTIFY_CONFIG", notifyCfg)
	t.Setenv("RUNBOOKBOT_DRIFT_INTERVAL", "50ms")
	t.Setenv("RUNBOOKBOT_DRIFT_CHANNEL", "webhook:ops")
	t.Setenv("RUNBOOKBOT_METRICS_CONFIG", "")
	t.Setenv("PROMETHEUS_URL", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	h.opts.listen = "127.0.0.1:0"
	h.start()
	metricsURL := "http://" + h.rb.addr + "/metrics"

	checks := regexp.MustCompile(`(?m)^runbookbot_drift_checks_total (\d+)$`)
	checksDone := func() int {
		_, body := get(t, metricsURL)
		m := checks.FindStringSubmatch(body)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	// waitChecks polls until n more checks have completed.
	waitChecks := func(n int) {
		t.Helper()
		target := checksDone() + n
		deadline := time.Now().Add(30 * time.Second)
		for checksDone() < target {
			if time.Now().After(deadline) {
				t.Fatalf("drift checks stuck at %d, want %d", checksDone(), target)
			}
			time.Sleep(20 * time.Millisecond) // the check runs on the wall clock
		}
	}
	driftMessages := func() []string {
		var out []string
		for _, m := range h.emu.AllMessages(h.ops) {
			if strings.Contains(body(m), "Runbook drift") {
				out = append(out, body(m))
			}
		}
		return out
	}
	gauge := func() string {
		_, b := get(t, metricsURL)
		for _, l := range strings.Split(b, "\n") {
			if strings.HasPrefix(l, `runbook_drift_findings{kind="http",runbook_name="shop-health"}`) {
				return strings.Fields(l)[1]
			}
		}
		return "absent"
	}

	// The endpoint answers: nothing to say.
	waitChecks(3)
	if msgs := driftMessages(); len(msgs) != 0 {
		t.Fatalf("drift posted without drift: %q", msgs)
	}
	if g := gauge(); g != "0" {
		t.Errorf("http drift gauge = %s, want 0", g)
	}

	health.down.Store(true)
	msg := h.message(h.ops, "the drift report", contains("Runbook drift: 1 finding(s) now.", "NEW "+file+":"+strconv.Itoa(healthLine)+":", "answers 503"))
	if g := gauge(); g != "1" {
		t.Errorf("http drift gauge = %s, want 1", g)
	}
	waitChecks(4)
	if msgs := driftMessages(); len(msgs) != 1 {
		t.Fatalf("%d drift reports while nothing changed, want the one: %q", len(msgs), msgs)
	}

	health.down.Store(false)
	h.message(h.ops, "the fix reported", func(m slackemu.Message) bool {
		return m.TS != msg.TS && strings.Contains(body(m), "Runbook drift: 0 finding(s) now.") && strings.Contains(body(m), "FIXED "+file)
	})
	if g := gauge(); g != "0" {
		t.Errorf("http drift gauge after the fix = %s, want 0", g)
	}
	waitChecks(4)
	if msgs := driftMessages(); len(msgs) != 2 {
		t.Errorf("%d drift reports, want the drift and its fix: %q", len(msgs), msgs)
	}
}

// A drift report to a #channel (no notification config) is posted there
// by the bot itself on the default chat platform: it has no execution, and
// was once dropped for that.
func TestServePostsDriftToAChatChannel(t *testing.T) {
	health := &switchable{}
	health.down.Store(true)
	healthSrv := httptest.NewServer(health)
	defer healthSrv.Close()
	httpOnly, _, _ := strings.Cut(driftRunbook, "  - name: queue-drained")
	h := newE2E(t, false, writeFile(t, t.TempDir(), "shop-health.yaml", strings.Replace(httpOnly, "HEALTH", healthSrv.URL+"/healthz", 1)))
	h.stop()
	t.Setenv("RUNBOOKBOT_NOTIFY_CONFIG", "")
	t.Setenv("RUNBOOKBOT_DRIFT_INTERVAL", "50ms")
	t.Setenv("RUNBOOKBOT_DRIFT_CHANNEL", "#ops")
	t.Setenv("RUNBOOKBOT_METRICS_CONFIG", "")
	t.Setenv("PROMETHEUS_URL", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	h.start()
	h.message(h.ops, "the drift report in #ops", contains("Runbook drift: 1 finding(s) now.", "answers 503"))
}
