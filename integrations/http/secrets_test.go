package http_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	rbhttp "github.com/runbookbot/runbookbot/integrations/http"
)

// secretCall is a call as the engine makes it for a step whose URL path,
// non-credential query parameter, header and body use a secret: the
// step's params as written, the rendered params, and the execution's
// secret masking.
func secretCall(action, base string, clock engine.Clock) *engine.Call {
	raw := map[string]any{
		"url":     "{{ base }}/v1/{{ secrets.token }}/gc/{{ secrets.token | upper }}?tenant={{ secrets.token }}&region=eu",
		"headers": map[string]any{"X-Api": "{{ secrets.token }}"},
		"body":    "token={{ secrets.token }}",
		"retries": 0,
	}
	rendered := map[string]any{
		"url":     base + "/v1/" + secret + "/gc/" + strings.ToUpper(secret) + "?tenant=" + secret + "&region=eu",
		"headers": map[string]any{"X-Api": secret},
		"body":    "token=" + secret,
		"retries": 0,
	}
	return &engine.Call{
		Step:   &engine.Step{Name: "gc", Type: "http", Action: action, Params: engine.Params{Values: raw}},
		Params: rendered, Vars: map[string]any{}, Clock: clock,
		Redact: func(s string) string { return strings.ReplaceAll(s, secret, engine.Mask) },
	}
}

func TestSecretsInURLNeverLoggedOrInErrors(t *testing.T) {
	var seen struct {
		sync.Mutex
		path, query, header, body string
	}
	record := func(r *http.Request) string {
		body, _ := io.ReadAll(r.Body)
		seen.Lock()
		defer seen.Unlock()
		seen.path, seen.query, seen.header, seen.body = r.URL.Path, r.URL.Query().Get("tenant"), r.Header.Get("X-Api"), string(body)
		return string(body)
	}
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r)
		io.WriteString(w, "collected")
	}))
	defer ok.Close()
	// A failing server that echoes what it was sent.
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := record(r)
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "cannot handle "+body)
	}))
	defer broken.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()

	forms := []string{secret, strings.ToUpper(secret)}
	for _, tc := range []struct {
		name, base string
		wantErr    []string
	}{
		{"success", ok.URL, nil},
		{"500", broken.URL, []string{"returned 500", "cannot handle token=" + engine.Mask}},
		{"connection refused", gone.URL, []string{"connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs enginetest.LogBuffer
			e := newEnv(t, rbhttp.Deps{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			spec, _ := e.reg.Lookup("http", "post")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := spec.Run.Run(ctx, secretCall("post", tc.base, enginetest.NewFakeClock(time.Now())))
			if tc.wantErr == nil && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != nil {
				wantErr(t, err, tc.wantErr...)
				// The URL is named as the runbook wrote it.
				wantErr(t, err, "POST {{ base }}/v1/{{ secrets.token }}/gc/{{ secrets.token | upper }}?tenant={{ secrets.token }}&region=eu")
			}
			if tc.base != gone.URL {
				seen.Lock()
				if seen.path != "/v1/"+secret+"/gc/"+strings.ToUpper(secret) || seen.query != secret || seen.header != secret || seen.body != "token="+secret {
					t.Errorf("the server got path %q, tenant %q, X-Api %q, body %q: the secret was not sent where the runbook says", seen.path, seen.query, seen.header, seen.body)
				}
				seen.Unlock()
			}
			if !strings.Contains(logs.String(), "url=") {
				t.Fatalf("no debug line names the URL:\n%s", logs.String())
			}
			for _, f := range forms {
				if strings.Contains(logs.String(), f) {
					t.Errorf("a log line holds the secret (%s):\n%s", f, logs.String())
				}
				if err != nil && strings.Contains(err.Error(), f) {
					t.Errorf("the error holds the secret (%s): %v", f, err)
				}
				if strings.Contains(toJSON(res.Output["url"]), f) {
					t.Errorf("output url holds the secret: %v", res.Output["url"])
				}
			}
		})
	}
}

func TestRedactURLTemplate(t *testing.T) {
	for in, want := range map[string]string{
		"http://{{ podName }}.{{ namespace }}.svc:8080/admin/gc":                   "http://{{ podName }}.{{ namespace }}.svc:8080/admin/gc",
		"https://admin:hunter2@{{ host }}/x?api_key=abc&token={{ secrets.t }}&q=1": "https://{{ host }}/x?api_key=REDACTED&token={{ secrets.t }}&q=1",
		"{{ base }}/v1/{{ secrets.t }}?tenant={{ secrets.t }}":                     "{{ base }}/v1/{{ secrets.t }}?tenant={{ secrets.t }}",
	} {
		if got := rbhttp.RedactURLTemplate(in); got != want {
			t.Errorf("RedactURLTemplate(%s) = %s, want %s", in, got, want)
		}
	}
}
