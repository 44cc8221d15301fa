package prometheus_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/prometheus"
)

const memQuery = `max(container_memory_working_set_bytes{namespace="{{ namespace }}",pod="{{ podName }}"} / container_spec_memory_limit_bytes{namespace="{{ namespace }}",pod="{{ podName }}"}) * 100`

// fakeProm answers /api/v1/query with a canned body per query and records
// the queries it received.
type fakeProm struct {
	mu      sync.Mutex
	queries []string
	answer  func(q string) (int, string)
	headers http.Header
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/prom/api/v1/query" || r.Method != http.MethodPost {
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		return
	}
	q := r.FormValue("query")
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.headers = r.Header.Clone()
	f.mu.Unlock()
	code, body := f.answer(q)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

func (f *fakeProm) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) == 0 {
		return ""
	}
	return f.queries[len(f.queries)-1]
}

const (
	vector1 = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1769767200.123,"92.5"]}]}}`
	scalar  = `{"status":"success","data":{"resultType":"scalar","result":[1769767200,"0.25"]}}`
	empty   = `{"status":"success","data":{"resultType":"vector","result":[]}}`
	two     = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1,"1"]},{"metric":{"pod":"b"},"value":[1,"2"]}]}}`
	matrix  = `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}`
	nan     = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}`
	badData = `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected \"}\""}`
)

func serve(t *testing.T, answer func(q string) (int, string)) (*fakeProm, string) {
	f := &fakeProm{answer: answer}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL + "/prom/"
}

func staging() map[string]any {
	return map[string]any{"namespace": "staging", "podName": "api-server-abc123", "state": map[string]any{}}
}

func TestResolveVector(t *testing.T) {
	f, url := serve(t, func(string) (int, string) { return 200, vector1 })
	reg := engine.NewRegistry()
	m := prometheus.New(prometheus.Config{URL: url, Queries: map[string]string{"podMemoryPercent": memQuery, "errorRate": "x"},
		Headers: map[string]string{"Authorization": "Bearer tok"}})
	m.Register(reg)
	v, err := m.Resolve(context.Background(), []string{"podMemoryPercent"}, staging())
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(map[string]any)["podMemoryPercent"]; got != 92.5 {
		t.Errorf("podMemoryPercent = %#v, want 92.5", got)
	}
	want := `max(container_memory_working_set_bytes{namespace="staging",pod="api-server-abc123"} / container_spec_memory_limit_bytes{namespace="staging",pod="api-server-abc123"}) * 100`
	if f.last() != want {
		t.Errorf("query = %s\nwant    %s", f.last(), want)
	}
	if f.headers.Get("Authorization") != "Bearer tok" {
		t.Errorf("headers = %v", f.headers)
	}
	// The seed's condition evaluates against the result.
	cond, _ := engine.CompileCondition("metrics.podMemoryPercent < 80")
	if ok, err := cond.Eval(map[string]any{"metrics": v}); err != nil || ok {
		t.Errorf("condition = %v, %v; want false", ok, err)
	}
}

func TestResolveScalarAndWindow(t *testing.T) {
	f, url := serve(t, func(string) (int, string) { return 200, scalar })
	m := prometheus.New(prometheus.Config{URL: url, Queries: map[string]string{"errorRate": `sum(rate(http_errors_total{namespace="{{ namespace }}"}[1m]))`}})
	vars := staging()
	vars["window"] = "5m0s" // as the engine passes a rollback trigger's window
	v, err := m.Resolve(context.Background(), []string{"errorRate"}, vars)
	if err != nil || v.(map[string]any)["errorRate"] != 0.25 {
		t.Fatalf("errorRate = %v, %v", v, err)
	}
	if want := `avg_over_time((sum(rate(http_errors_total{namespace="staging"}[1m])))[5m:])`; f.last() != want {
		t.Errorf("query = %s, want %s", f.last(), want)
	}
}

func TestResolveErrors(t *testing.T) {
	answers := map[string]string{"empty": empty, "two": two, "matrix": matrix, "nan": nan, "bad": badData}
	_, url := serve(t, func(q string) (int, string) {
		if q == "bad" {
			return 400, badData
		}
		if q == "down" {
			return 503, "Service Unavailable: overloaded"
		}
		return 200, answers[q]
	})
	queries := map[string]string{"empty": "empty", "two": "two", "matrix": "matrix", "nan": "nan", "bad": "bad", "down": "down", "needsVar": `up{job="{{ job }}"}`}
	m := prometheus.New(prometheus.Config{URL: url, Queries: queries})
	for name, want := range map[string][]string{
		"empty":    {"metric empty", "query returned no data", "(query: empty)"},
		"two":      {"query returned 2 series", `{pod="a"}`, "max(...)"},
		"matrix":   {"range vector"},
		"nan":      {"NaN"},
		"bad":      {"rejected by Prometheus (bad_data: 1:5: parse error"},
		"down":     {"unexpected answer from Prometheus", "503 Service Unavailable: Service Unavailable: overloaded"},
		"needsVar": {`metric needsVar needs "job"`},
		"unknown":  {`no metric named "unknown"; configured metrics: bad, down, empty, matrix, nan, needsVar, two`},
	} {
		_, err := m.Resolve(context.Background(), []string{name}, staging())
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", name, err, w)
			}
		}
	}
	_, err := m.Metric(context.Background(), "empty", staging())
	if !errors.Is(err, prometheus.ErrNoData) {
		t.Errorf("empty result: %v is not ErrNoData", err)
	}
}

func TestEscapesLabelValues(t *testing.T) {
	f, url := serve(t, func(string) (int, string) { return 200, vector1 })
	m := prometheus.New(prometheus.Config{URL: url, Queries: map[string]string{"x": `up{pod="{{ podName }}"}`}})
	if _, err := m.Resolve(context.Background(), []string{"x"}, map[string]any{"podName": `a"} or vector(1) #\`}); err != nil {
		t.Fatal(err)
	}
	if want := `up{pod="a\"} or vector(1) #\\"}`; f.last() != want {
		t.Errorf("query = %s, want %s", f.last(), want)
	}
}

func TestUnreachableHidesCredentials(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	u := strings.Replace(addr, "http://", "http://admin:hunter2@", 1) + "?token=hunter2"
	m := prometheus.New(prometheus.Config{URL: u, Queries: map[string]string{"x": "up"}})
	_, err := m.Resolve(context.Background(), []string{"x"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no answer from Prometheus") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("err = %v", err)
	}
	_, err = prometheus.New(prometheus.Config{Queries: map[string]string{"x": "up"}}).Resolve(context.Background(), []string{"x"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no Prometheus URL") {
		t.Errorf("no URL: %v", err)
	}
}

func TestContextCancelled(t *testing.T) {
	started := make(chan struct{})
	_, url := serve(t, func(string) (int, string) {
		close(started)
		return 200, vector1
	})
	m := prometheus.New(prometheus.Config{URL: url, Queries: map[string]string{"x": "up"}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Resolve(ctx, []string{"x"}, nil); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("err = %v", err)
	}
	select {
	case <-started:
		t.Error("query sent after cancellation")
	default:
	}
}

func writeFile(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "prometheus.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	cfg, err := prometheus.LoadConfig(writeFile(t, `
url: http://prometheus:9090
timeout: 15s
queries:
  podMemoryPercent: >-
    max(container_memory_working_set_bytes{namespace="{{ namespace }}",pod="{{ podName }}"}
    / container_spec_memory_limit_bytes{namespace="{{ namespace }}",pod="{{ podName }}"}) * 100
  errorRate: sum(rate(http_requests_total{code=~"5..",namespace="{{ namespace }}"}[5m])) / sum(rate(http_requests_total{namespace="{{ namespace }}"}[5m])) * 100
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "http://prometheus:9090" || cfg.Timeout.Seconds() != 15 || len(cfg.Queries) != 2 || !strings.HasPrefix(cfg.Queries["podMemoryPercent"], "max(") {
		t.Errorf("cfg = %+v", cfg)
	}
	for content, want := range map[string]string{
		"url: http://p\nquerys: {a: up}\n":               "field querys not found",
		"queries: {a: up}\n":                             "url is required",
		"url: prometheus:9090\nqueries: {a: up}\n":       "http(s) URL",
		"url: http://p\n":                                "at least one metric",
		"url: http://p\nqueries: {a: 'up{{ x'}\n":        "queries.a",
		"url: http://p\nqueries: {a-b: up}\n":            "not a valid metric name",
		"url: http://p\ntimeout: soon\nqueries: {a: up}": "timeout",
		"": "empty",
	} {
		_, err := prometheus.LoadConfig(writeFile(t, content))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig(%q) = %v, want error containing %q", content, err, want)
		}
	}
	if _, err := prometheus.LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
}
