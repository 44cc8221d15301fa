package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/integrations/redis"
	"github.com/runbookbot/runbookbot/test/redistest"
)

// canary is the one secret of the canary test; it must never be seen in
// any form anywhere people or machines read.
const canary = "Sup3r-S3cret-CANARY-42x"

// canaryForms are the forms the secret takes through filters and
// encodings on its way out.
func canaryForms() []string {
	return []string{canary, strings.ToUpper(canary), strings.ToLower(canary), canary[:8], canary[:12],
		url.QueryEscape(canary), base64.StdEncoding.EncodeToString([]byte(canary)), base64.StdEncoding.EncodeToString([]byte("user:" + canary))}
}

const canaryRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: canary, version: "1"}
parameters:
  - {name: base, type: string, required: true}
steps:
  - name: call-with-secret
    type: http
    action: post
    params:
      url: "{{ base }}/v1/{{ secrets.apiToken }}/items?tenant={{ secrets.apiToken | lower }}&q={{ secrets.apiToken | upper }}"
      headers:
        X-Token: "{{ secrets.apiToken | trunc(8) }}"
        Authorization: "Bearer {{ secrets.apiToken }}"
      json:
        token: "{{ secrets.apiToken }}"
        head: "{{ secrets.apiToken | trunc(12) }}"
    saveOutput: echoed
  - name: say-it
    type: log
    action: print
    params:
      message: "token is {{ secrets.apiToken | quote }} / {{ secrets.apiToken | json }}"
  - name: server-error
    type: http
    action: post
    params:
      url: "{{ base }}/fail/{{ secrets.apiToken | upper }}"
      json: {token: "{{ secrets.apiToken }}"}
    continueOnFailure: true
  - name: unreachable
    type: http
    action: get
    params:
      url: "http://127.0.0.1:1/{{ secrets.apiToken }}?k={{ secrets.apiToken | lower }}"
    timeout: 5s
    continueOnFailure: true
  - name: tell
    type: notification
    action: send
    params:
      channels: ["slack"]
      message: "rotated {{ secrets.apiToken | trunc(12) }}"
  - name: fail-with-it
    type: log
    action: print
    params:
      fail: "upstream refused {{ secrets.apiToken | lower }}"
`

// echoServer answers every request with everything it received (path,
// query, headers, body), and /fail/… with a 500 carrying the same: the
// worst an upstream can do with a secret.
func echoServer(t *testing.T) (*httptest.Server, func() int) {
	var mu sync.Mutex
	seen := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		if strings.Contains(r.URL.Path, canary) || strings.Contains(r.URL.Path, strings.ToUpper(canary)) {
			seen++
		}
		mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/fail/") {
			w.WriteHeader(http.StatusInternalServerError)
		}
		fmt.Fprintf(w, "path=%s query=%s auth=%s token=%s body=%s", r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("X-Token"), b)
	}))
	t.Cleanup(srv.Close)
	return srv, func() int { mu.Lock(); defer mu.Unlock(); return seen }
}

func leaks(where, text string) []string {
	var out []string
	for _, f := range canaryForms() {
		if strings.Contains(text, f) {
			out = append(out, fmt.Sprintf("%s contains %q", where, f))
		}
	}
	return out
}

// One secret, used through every filter, in URL paths, query strings,
// headers and bodies, on success and on failure: it reaches the upstream,
// and never chat, the store, the Redis audit stream, the logs (at debug),
// errors, the terminal or a dry run.
func TestSecretCanaryEverywhere(t *testing.T) {
	t.Setenv("RUNBOOKBOT_SECRET_APITOKEN", canary)
	echo, upstreamSaw := echoServer(t)
	rdb := redistest.Start(t)
	rbFile := filepath.Join(t.TempDir(), "canary.yaml")
	if err := os.WriteFile(rbFile, []byte(canaryRunbook), 0o644); err != nil {
		t.Fatal(err)
	}

	// Chat, with the Redis store and audit stream and a debug log.
	h := newE2E(t, false, rbFile)
	h.stop()
	h.opts.store = rdb.URL()
	h.opts.clock = engine.SystemClock{} // the http steps' retries and timeouts run in real time
	logs := &enginetest.LogBuffer{}
	rb, err := startBot(context.Background(), h.opts, logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rb.run(ctx) }()
	defer func() { cancel(); <-done; rb.close() }()

	h.slash("alice", h.ops, "run canary base="+echo.URL)
	parent := h.message(h.ops, "the canary run to finish", func(m slackemu.Message) bool {
		return strings.Contains(body(m), "canary") && (strings.Contains(body(m), "Failed") || strings.Contains(body(m), "failure"))
	})
	if upstreamSaw() < 2 {
		t.Fatalf("the upstream did not receive the secret (%d calls with it): the test proves nothing", upstreamSaw())
	}

	var found []string
	var chat strings.Builder
	for _, ch := range []string{h.ops, h.incident} {
		for _, m := range h.emu.Messages(ch) {
			chat.WriteString(body(m) + "\n")
		}
	}
	for _, m := range h.emu.Replies(h.ops, parent.TS) {
		chat.WriteString(body(m) + "\n")
	}
	for _, e := range h.emu.Ephemerals(h.users["alice"]) {
		chat.WriteString(e.Text + "\n")
	}
	found = append(found, leaks("chat", chat.String())...)

	// The audit stream in Redis, once the mirror has shipped the run.
	client, err := redis.NewClient(rdb.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var stream strings.Builder
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, err := client.XRange(context.Background(), "runbookbot:audit", "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		stream.Reset()
		finished := false
		for _, e := range entries {
			fmt.Fprintln(&stream, e.Values)
			if e.Values["type"] == "execution.finished" {
				finished = true
			}
		}
		if finished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit stream never got the finished execution")
		}
		time.Sleep(20 * time.Millisecond) // the mirror ships asynchronously
	}
	found = append(found, leaks("the Redis audit stream", stream.String())...)

	// Everything in Redis (the store's own keys), as text.
	keys, err := client.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var dump strings.Builder
	for _, k := range keys {
		switch typ, _ := client.Type(context.Background(), k).Result(); typ {
		case "string":
			v, _ := client.Get(context.Background(), k).Result()
			dump.WriteString(v)
		case "hash":
			v, _ := client.HGetAll(context.Background(), k).Result()
			fmt.Fprint(&dump, v)
		case "list":
			v, _ := client.LRange(context.Background(), k, 0, -1).Result()
			fmt.Fprint(&dump, v)
		case "zset":
			v, _ := client.ZRange(context.Background(), k, 0, -1).Result()
			fmt.Fprint(&dump, v)
		case "stream":
			v, _ := client.XRange(context.Background(), k, "-", "+").Result()
			fmt.Fprint(&dump, v)
		}
	}
	found = append(found, leaks("the Redis store", dump.String())...)
	found = append(found, leaks("the bot's debug log", logs.String())...)

	// The terminal: history, status and a dry run.
	code, out, errs := cli(t, "", "history", "--store", rdb.URL(), "--json")
	if code != exitOK {
		t.Fatalf("history: %d %s", code, errs)
	}
	found = append(found, leaks("history", out+errs)...)
	_, out, errs = cli(t, "", "dry-run", rbFile, "--param", "base="+echo.URL)
	found = append(found, leaks("dry-run", out+errs)...)
	_, out, errs = cli(t, "", "dry-run", rbFile, "--param", "base="+echo.URL, "--json")
	found = append(found, leaks("dry-run --json", out+errs)...)

	// The same run from the terminal, with its output and errors.
	code, out, errs = cli(t, "", "run", "--data-dir", t.TempDir(), rbFile, "--param", "base="+echo.URL)
	if code == exitOK {
		t.Errorf("the canary run should fail at its last step")
	}
	found = append(found, leaks("runbookbot run", out+errs)...)

	for _, f := range found {
		t.Error(f)
	}
}
