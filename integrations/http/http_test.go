package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	rbhttp "github.com/runbookbot/runbookbot/integrations/http"
)

const secret = "s3cr3t-CANARY-token"

type env struct {
	t     *testing.T
	reg   *engine.Registry
	clock *enginetest.FakeClock
}

func newEnv(t *testing.T, deps rbhttp.Deps) *env {
	reg := engine.NewRegistry()
	rbhttp.Register(reg, deps)
	return &env{t: t, reg: reg, clock: enginetest.NewFakeClock(time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC))}
}

func (e *env) call(action string, params map[string]any) (engine.Action, *engine.Call) {
	e.t.Helper()
	spec, ok := e.reg.Lookup("http", action)
	if !ok {
		e.t.Fatalf("http.%s not registered", action)
	}
	return spec.Run, &engine.Call{Step: &engine.Step{Name: "s", Type: "http", Action: action}, Params: params, Vars: map[string]any{}, Clock: e.clock}
}

func (e *env) run(action string, params map[string]any) (engine.Result, error) {
	e.t.Helper()
	a, c := e.call(action, params)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return a.Run(ctx, c)
}

type outcome struct {
	res engine.Result
	err error
}

// start runs an action in the background, for tests that move the clock.
func (e *env) start(ctx context.Context, action string, params map[string]any) <-chan outcome {
	a, c := e.call(action, params)
	done := make(chan outcome, 1)
	go func() {
		res, err := a.Run(ctx, c)
		done <- outcome{res, err}
	}()
	return done
}

// park waits until n timers are pending on the clock.
func (e *env) park(n int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.clock.WaitTimers(ctx, n); err != nil {
		e.t.Fatalf("waiting for %d timers: %v", n, err)
	}
}

func wait(t *testing.T, done <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("action did not finish")
		return outcome{}
	}
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

// statuses serves the given statuses in turn (the last one repeats).
func statuses(t *testing.T, codes ...int) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		code := codes[min(i, len(codes)-1)]
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		io.WriteString(w, http.StatusText(code)+" from attempt "+string(rune('1'+i)))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestSpecs(t *testing.T) {
	e := newEnv(t, rbhttp.Deps{})
	for _, m := range []string{"get", "post", "put", "patch", "delete"} {
		spec, ok := e.reg.Lookup("http", m)
		if !ok || spec.Mutating != (m != "get") || spec.Required[0] != "url" || spec.Estimate == nil {
			t.Errorf("%s spec = %+v", m, spec)
		}
	}
	spec, _ := e.reg.Lookup("http", "post")
	for _, bad := range []map[string]any{
		{"url": "ftp://x"},
		{"url": "http://x", "headers": "Authorization: x"},
		{"url": "http://x", "json": map[string]any{}, "body": "x"},
		{"url": "http://x", "expectStatus": "ok"},
		{"url": "http://x", "retries": 99},
		{"url": "http://x", "timeout": "soon"},
	} {
		if err := spec.Validate(&engine.Step{Params: engine.Params{Values: bad}}); err == nil {
			t.Errorf("Validate(%v) passed", bad)
		}
	}
	// The seed's trigger-gc params lint clean.
	seed := map[string]any{"url": "http://{{ podName }}.{{ namespace }}.svc.cluster.local:8080/admin/gc",
		"headers": map[string]any{"Authorization": "Bearer {{ secrets.adminToken }}"}}
	if err := spec.Validate(&engine.Step{Params: engine.Params{Values: seed}}); err != nil {
		t.Errorf("seed params: %v", err)
	}
}

func TestGetJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Query().Get("q") != "1" {
			t.Errorf("got %s %s", r.Method, r.URL)
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Set-Cookie", "session=abc")
		w.Header().Set("X-Request-Id", "req-9")
		io.WriteString(w, `{"status":"ok","heap":{"usedMb":512}}`)
	}))
	defer srv.Close()
	res, err := newEnv(t, rbhttp.Deps{}).run("get", map[string]any{"url": srv.URL + "/health?q=1"})
	if err != nil {
		t.Fatal(err)
	}
	body, ok := res.Output["body"].(map[string]any)
	if !ok || body["status"] != "ok" || body["heap"].(map[string]any)["usedMb"] != 512.0 {
		t.Errorf("body = %#v", res.Output["body"])
	}
	h := res.Output["headers"].(map[string]any)
	if h["X-Request-Id"] != "req-9" || h["Set-Cookie"] != nil {
		t.Errorf("headers = %v", h)
	}
	if res.Output["status"] != 200 || res.Output["attempts"] != 1 {
		t.Errorf("output = %v", res.Output)
	}
	// Conditions and templates can read the parsed body.
	cond, _ := engine.CompileCondition("out.body.heap.usedMb > 500 && out.status == 200")
	if ok, err := cond.Eval(map[string]any{"out": res.Output}); err != nil || !ok {
		t.Errorf("condition = %v, %v", ok, err)
	}
}

// The seed's trigger-gc step: POST, Authorization header, no body.
func TestSeedTriggerGC(t *testing.T) {
	var got *http.Request
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		gotBody, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "gc triggered\n")
	}))
	defer srv.Close()
	res, err := newEnv(t, rbhttp.Deps{}).run("post", map[string]any{
		"url":     srv.URL + "/admin/gc",
		"headers": map[string]any{"Authorization": "Bearer " + secret + "\n"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/admin/gc" || got.Header.Get("Authorization") != "Bearer "+secret {
		t.Errorf("request = %s %s, Authorization %q", got.Method, got.URL.Path, got.Header.Get("Authorization"))
	}
	if len(gotBody) != 0 || got.ContentLength != 0 {
		t.Errorf("body = %q (length %d), want empty", gotBody, got.ContentLength)
	}
	if res.Output["status"] != 202 || res.Output["body"] != "gc triggered" {
		t.Errorf("output = %v", res.Output)
	}
	if strings.Contains(toJSON(res.Output), secret) {
		t.Error("output contains the Authorization header")
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestPostJSONAndRawBody(t *testing.T) {
	var ct string
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct = r.Header.Get("Content-Type")
		body, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, strings.Repeat("x", 10000))
	}))
	defer srv.Close()
	e := newEnv(t, rbhttp.Deps{})
	res, err := e.run("put", map[string]any{"url": srv.URL, "json": map[string]any{"replicas": 3, "tags": []any{"a"}}})
	if err != nil {
		t.Fatal(err)
	}
	if ct != "application/json" || string(body) != `{"replicas":3,"tags":["a"]}` {
		t.Errorf("sent %s %s", ct, body)
	}
	if s := res.Output["body"].(string); len(s) > 4200 || !strings.Contains(s, "bytes cut") {
		t.Errorf("text body not cut: %d bytes", len(s))
	}
	if _, err := e.run("patch", map[string]any{"url": srv.URL, "body": "a=1", "headers": map[string]any{"Content-Type": "application/x-www-form-urlencoded"}}); err != nil {
		t.Fatal(err)
	}
	if ct != "application/x-www-form-urlencoded" || string(body) != "a=1" {
		t.Errorf("sent %s %s", ct, body)
	}
}

func TestRetryAfter500(t *testing.T) {
	srv, n := statuses(t, 500, 200)
	e := newEnv(t, rbhttp.Deps{})
	done := e.start(context.Background(), "post", map[string]any{"url": srv.URL})
	e.park(1) // backoff after the 500
	e.clock.Advance(time.Second)
	o := wait(t, done)
	if o.err != nil {
		t.Fatal(o.err)
	}
	if n.Load() != 2 || o.res.Output["attempts"] != 2 || o.res.Output["status"] != 200 {
		t.Errorf("calls = %d, output = %v", n.Load(), o.res.Output)
	}
}

func TestRetriesExhaustedWithDoublingBackoff(t *testing.T) {
	srv, n := statuses(t, 503)
	e := newEnv(t, rbhttp.Deps{})
	done := e.start(context.Background(), "get", map[string]any{"url": srv.URL, "retries": 2, "retryBackoff": "1s"})
	e.park(1)
	e.clock.Advance(time.Second) // first retry after 1s
	e.park(1)
	e.clock.Advance(time.Second)
	if e.clock.Timers() != 1 {
		t.Fatal("second retry did not wait 2s")
	}
	e.clock.Advance(time.Second)
	o := wait(t, done)
	wantErr(t, o.err, "GET "+srv.URL+" returned 503 Service Unavailable, expected 2xx", "from attempt 3", "(after 3 attempts)")
	if n.Load() != 3 || o.res.Output["status"] != 503 {
		t.Errorf("calls = %d, output = %v", n.Load(), o.res.Output)
	}
}

func Test404NotRetried(t *testing.T) {
	srv, n := statuses(t, 404, 200)
	res, err := newEnv(t, rbhttp.Deps{}).run("delete", map[string]any{"url": srv.URL + "/x"})
	wantErr(t, err, "DELETE "+srv.URL+"/x returned 404 Not Found, expected 2xx: Not Found from attempt 1")
	if n.Load() != 1 || res.Output["status"] != 404 {
		t.Errorf("calls = %d, output = %v", n.Load(), res.Output)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	e := newEnv(t, rbhttp.Deps{})
	done := e.start(context.Background(), "get", map[string]any{"url": srv.URL})
	e.park(1)
	e.clock.Advance(4 * time.Second)
	if e.clock.Timers() != 1 {
		t.Fatal("retry did not honour Retry-After: 5")
	}
	e.clock.Advance(time.Second)
	if o := wait(t, done); o.err != nil || n.Load() != 2 {
		t.Fatalf("err = %v, calls = %d", o.err, n.Load())
	}
}

func TestExpectStatus(t *testing.T) {
	srv, n := statuses(t, 503, 404)
	e := newEnv(t, rbhttp.Deps{})
	// An expected 503 is not retried.
	if res, err := e.run("get", map[string]any{"url": srv.URL, "expectStatus": 503}); err != nil || res.Output["status"] != 503 || n.Load() != 1 {
		t.Errorf("expect 503: %v, %v, calls %d", res.Output, err, n.Load())
	}
	if _, err := e.run("get", map[string]any{"url": srv.URL, "expectStatus": []any{200, "4xx"}}); err != nil {
		t.Errorf("expect [200, 4xx] got 404: %v", err)
	}
	_, err := e.run("get", map[string]any{"url": srv.URL, "expectStatus": []any{"200", 201.0}})
	wantErr(t, err, "404 Not Found, expected 200 or 201")
}

func TestStepTimeoutFromContext(t *testing.T) {
	started := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
	}))
	defer srv.Close()
	e := newEnv(t, rbhttp.Deps{})
	ctx, cancel := context.WithCancelCause(context.Background())
	done := e.start(ctx, "post", map[string]any{"url": srv.URL + "/admin/gc"})
	<-started
	stepTimeout := errors.New("step timed out after 10s")
	cancel(stepTimeout)
	o := wait(t, done)
	if !errors.Is(o.err, stepTimeout) {
		t.Fatalf("err = %v, want the step's timeout", o.err)
	}
	wantErr(t, o.err, "POST "+srv.URL+"/admin/gc: step timed out after 10s")
	if e.clock.Timers() != 0 {
		t.Errorf("%d timers left behind", e.clock.Timers())
	}
}

func TestAttemptTimeoutRetried(t *testing.T) {
	var n atomic.Int32
	started := make(chan struct{}, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			started <- struct{}{}
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	e := newEnv(t, rbhttp.Deps{})
	done := e.start(context.Background(), "get", map[string]any{"url": srv.URL, "timeout": "5s", "retries": 1})
	<-started
	e.clock.Advance(5 * time.Second) // the attempt's timeout
	e.park(1)                        // backoff
	e.clock.Advance(time.Second)
	o := wait(t, done)
	if o.err != nil || o.res.Output["body"] != "ok" || o.res.Output["attempts"] != 2 {
		t.Fatalf("output = %v, err = %v", o.res.Output, o.err)
	}
}

func TestConnectionErrorRetriedThenReported(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	e := newEnv(t, rbhttp.Deps{})
	done := e.start(context.Background(), "get", map[string]any{"url": addr, "retries": 1})
	e.park(1)
	e.clock.Advance(time.Second)
	o := wait(t, done)
	wantErr(t, o.err, "GET "+addr+": ", "connection refused", "(after 2 attempts)")
	if strings.Count(o.err.Error(), addr) != 1 {
		t.Errorf("URL repeated in %q", o.err)
	}
}

func TestErrorsHideCredentials(t *testing.T) {
	srv, _ := statuses(t, 500)
	u := strings.Replace(srv.URL, "http://", "http://admin:"+secret+"@", 1) + "/gc?api_key=" + secret + "&region=eu"
	res, err := newEnv(t, rbhttp.Deps{}).run("post", map[string]any{"url": u, "retries": 0,
		"headers": map[string]any{"Authorization": "Bearer " + secret}})
	wantErr(t, err, "api_key=REDACTED", "region=eu", "returned 500")
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "admin") || strings.Contains(toJSON(res.Output), secret) {
		t.Errorf("credentials leaked: %v / %v", err, res.Output)
	}
	_, err = newEnv(t, rbhttp.Deps{}).run("get", map[string]any{"url": "http://x/%zz?token=" + secret})
	wantErr(t, err, "not a valid URL")
	if strings.Contains(err.Error(), secret) {
		t.Errorf("bad URL error leaks: %v", err)
	}
	_, err = newEnv(t, rbhttp.Deps{}).run("get", map[string]any{"url": srv.URL, "headers": map[string]any{"X-Token": "a\nb" + secret}})
	wantErr(t, err, "X-Token", "line break")
	if strings.Contains(err.Error(), secret) {
		t.Errorf("header error leaks: %v", err)
	}
}

func TestParamErrors(t *testing.T) {
	e := newEnv(t, rbhttp.Deps{})
	for _, tc := range []struct {
		params map[string]any
		want   string
	}{
		{map[string]any{}, "param url is empty"},
		{map[string]any{"url": "example.com/x"}, "must start with http"},
		{map[string]any{"url": "http://x", "headers": []any{"a"}}, "mapping"},
		{map[string]any{"url": "http://x", "json": 1, "body": "x"}, "both set"},
		{map[string]any{"url": "http://x", "retries": -1}, "param retries"},
		{map[string]any{"url": "http://x", "expectStatus": 99}, "param expectStatus"},
		{map[string]any{"url": "http://x", "timeout": "later"}, "param timeout"},
	} {
		_, err := e.run("get", tc.params)
		wantErr(t, err, tc.want)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@h/p?token=a&x=1#frag":         "https://h/p?token=REDACTED&x=1",
		"http://h:8080/admin/gc":                   "http://h:8080/admin/gc",
		"http://h/?Password=a&sig=b&AccessKey=c&q": "http://h/?AccessKey=REDACTED&Password=REDACTED&q=&sig=REDACTED",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := rbhttp.RedactURL(u); got != want {
			t.Errorf("RedactURL(%s) = %s, want %s", in, got, want)
		}
	}
}
