package notify

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
)

const canaryHeader = "HDR-T0KEN-CANARY-51f2"

func TestWebhookRendersTheBodyTemplate(t *testing.T) {
	srv := newServer(t, http.StatusOK)
	n := New(Config{Webhooks: []WebhookConfig{{
		Name: "ops", URL: srv.URL + "/x", Headers: map[string]string{"X-Token": canaryHeader},
		Body: `{"text": {{ message | json }}, "sev": "{{ severity | upper }}", "rb": "{{ runbook }}", "id": "{{ executionId }}", "n": {{ len(channels) }}}`,
	}}}, nil)
	msg := note("webhook:ops", "#incidents")
	msg.Message = "line one\n\"quoted\""
	n.chat = &chatRecorder{}
	if err := n.Notify(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	r := srv.requests()[0]
	if r.Method != http.MethodPost || r.Path != "/x" {
		t.Errorf("request %s %s", r.Method, r.Path)
	}
	if r.Header.Get("X-Token") != canaryHeader || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.Header)
	}
	b := decode(t, r.Body)
	if b["text"] != msg.Message || b["sev"] != "WARNING" || b["rb"] != "high-memory-pod-remediation" || b["id"] != "exec-1" || b["n"] != 2.0 {
		t.Errorf("body = %s", r.Body)
	}
}

func TestWebhookBodyFromTheConfigExample(t *testing.T) {
	srv := newServer(t, http.StatusOK)
	n := New(Config{Webhooks: []WebhookConfig{{Name: "ops", URL: srv.URL, Body: `{"text": {{ message | json }}}`}}}, nil)
	if err := n.Notify(context.Background(), note("webhook:ops")); err != nil {
		t.Fatal(err)
	}
	if got := string(srv.requests()[0].Body); got != `{"text": "Rollback executed for api-1 in staging."}` {
		t.Errorf("body = %s", got)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	target := newServer(t, http.StatusOK)
	srv := newServer(t, http.StatusTemporaryRedirect)
	srv.header = map[string]string{"Location": target.URL + "/elsewhere"}
	n := New(Config{Webhooks: []WebhookConfig{{Name: "ops", URL: srv.URL, Headers: map[string]string{"X-Token": canaryHeader}}}}, nil)
	err := n.Notify(context.Background(), note("webhook:ops"))
	if err == nil || !strings.Contains(err.Error(), "status 307") {
		t.Errorf("error = %v", err)
	}
	if len(target.requests()) != 0 {
		t.Error("the redirect was followed, headers and all")
	}
}

func TestWebhookDefaultBodyAndMethod(t *testing.T) {
	srv := newServer(t, http.StatusNoContent)
	n := New(Config{Webhooks: []WebhookConfig{{Name: "audit", URL: srv.URL, Method: "put"}}}, nil)
	if err := n.Notify(context.Background(), note("webhook:audit")); err != nil {
		t.Fatal(err)
	}
	r := srv.requests()[0]
	if r.Method != http.MethodPut {
		t.Errorf("method %s", r.Method)
	}
	b := decode(t, r.Body)
	for _, k := range TemplateVars {
		if _, ok := b[k]; !ok {
			t.Errorf("default body lacks %s: %s", k, r.Body)
		}
	}
	if chs, _ := b["channels"].([]any); len(chs) != 1 || chs[0] != "webhook:audit" {
		t.Errorf("channels = %v", b["channels"])
	}
}

func TestWebhookTextBody(t *testing.T) {
	srv := newServer(t, http.StatusOK)
	n := New(Config{Webhooks: []WebhookConfig{{Name: "pager", URL: srv.URL, Body: "{{ runbook }}: {{ message | trunc(8) }}"}}}, nil)
	if err := n.Notify(context.Background(), note("webhook:pager")); err != nil {
		t.Fatal(err)
	}
	r := srv.requests()[0]
	if string(r.Body) != "high-memory-pod-remediation: Rollback" || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("body %q (%s)", r.Body, r.Header.Get("Content-Type"))
	}
}

func TestWebhookFailureNeverShowsHeadersOrURLPath(t *testing.T) {
	srv := newServer(t, http.StatusForbidden)
	// The service echoes the token and the URL, as some do.
	srv.body = func(int) string {
		return `{"error":"token ` + canaryHeader + ` rejected for /services/` + canaryKey + `"}`
	}
	n := New(Config{Webhooks: []WebhookConfig{{
		Name: "slack", URL: "${secret:slackWebhook}",
		Headers: map[string]string{"Authorization": "Bearer ${env:HOOK_TOKEN}", "X-Static": canaryHeader},
	}}, Secrets: secretMap{"slackWebhook": srv.URL + "/services/" + canaryKey},
		LookupEnv: env(map[string]string{"HOOK_TOKEN": canaryKey + "-bearer"})}, nil)
	err := n.Notify(context.Background(), note("webhook:slack"))
	if err == nil {
		t.Fatal("want an error")
	}
	assertNoLeak(t, canaryHeader, err.Error())
	assertNoLeak(t, canaryKey, err.Error())
	for _, want := range []string{"webhook slack", "status 403", "rejected"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	r := srv.requests()[0]
	if r.Header.Get("Authorization") != "Bearer "+canaryKey+"-bearer" || r.Path != "/services/"+canaryKey {
		t.Errorf("request %s with %v", r.Path, r.Header)
	}
}

func TestWebhookReferenceErrorsNameTheReference(t *testing.T) {
	n := New(Config{Webhooks: []WebhookConfig{
		{Name: "a", URL: "${env:HOOK_URL}"},
		{Name: "b", URL: "http://127.0.0.1:1/", Headers: map[string]string{"X-Token": "${secret:hookToken}"}},
		{Name: "c", URL: "${secret:notAURL}"},
	}, LookupEnv: env(nil), Secrets: secretMap{"notAURL": canaryKey}}, nil)
	for ch, want := range map[string]string{
		"webhook:a": "environment variable HOOK_URL is not set",
		"webhook:b": `header X-Token: secret "hookToken"`,
		"webhook:c": "url must be an absolute http(s) URL",
	} {
		err := n.Notify(context.Background(), note(ch))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", ch, err, want)
			continue
		}
		assertNoLeak(t, canaryKey, err.Error())
	}
}

func TestWebhookMisconfigurationSurfacesOnDelivery(t *testing.T) {
	srv := newServer(t)
	n := New(Config{Webhooks: []WebhookConfig{
		{Name: "typo", URL: srv.URL, Body: `{"text": {{ mesage | json }}}`},
		{Name: "get", URL: srv.URL, Method: "GET"},
	}}, nil)
	err := n.Notify(context.Background(), note("webhook:typo"))
	if err == nil || !strings.Contains(err.Error(), `unknown name "mesage"`) {
		t.Errorf("typo: %v", err)
	}
	err = n.Notify(context.Background(), note("webhook:get"))
	if err == nil || !strings.Contains(err.Error(), "use POST, PUT or PATCH") {
		t.Errorf("get: %v", err)
	}
	if len(srv.requests()) != 0 {
		t.Error("misconfigured webhooks must not send")
	}
}

func TestShownURLHidesPathAndQuery(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/XYZ": "https://hooks.slack.com/…",
		"https://hooks.example":                      "https://hooks.example",
		"http://u:pw@h:8080/?token=abc":              "http://h:8080/…",
		"::nope":                                     "(invalid URL)",
	} {
		if got := shownURL(in); got != want {
			t.Errorf("shownURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScrub(t *testing.T) {
	got := scrub("key abcd1234 and abc", []string{"abcd1234", "abc", ""})
	if got != "key "+engine.Mask+" and abc" {
		t.Errorf("scrub = %q", got)
	}
}
