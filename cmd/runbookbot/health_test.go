package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/integrations/embedded"
	"github.com/runbookbot/runbookbot/integrations/redis"
	"github.com/runbookbot/runbookbot/test/redistest"
)

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// runbookbot dev serves /healthz, /readyz and /metrics beside the
// playground, and --log-format json makes every log line a JSON object.
func TestDevServesHealthReadinessAndMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	var errs enginetest.LogBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"dev", "--addr", "127.0.0.1:0", "--runbooks", "../../runbooks",
			"--data-dir", filepath.Join(t.TempDir(), "data"), "--log-format", "json"}, strings.NewReader(""), outW, &errs)
		outW.Close()
	}()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var base string
	for l := range lines {
		if u, ok := strings.CutPrefix(l, "runbookbot playground: "); ok {
			base = u
			break
		}
	}
	if base == "" {
		t.Fatalf("dev printed no playground URL; exit %d, stderr:\n%s", <-code, errs.String())
	}
	go func() {
		for range lines { // keep dev's stdout flowing
		}
	}()

	if st, body := get(t, base+"healthz"); st != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", st, body)
	}
	// Ready once the Socket Mode connection is up (a moment after start).
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, body := get(t, base+"readyz")
		if st == http.StatusOK && strings.Contains(body, "[+]slack ok") && strings.Contains(body, "[+]store ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %q, want 200 with slack and store ok", st, body)
		}
		time.Sleep(20 * time.Millisecond) // polling /readyz with a deadline
	}
	st, body := get(t, base+"metrics")
	if st != http.StatusOK || !strings.Contains(body, "runbookbot_chat_rate_limited_total") || !strings.Contains(body, "runbookbot_alert_backlog") {
		t.Errorf("/metrics = %d, want the bot's metrics:\n%.400s", st, body)
	}
	for _, series := range []string{"\nrunbookbot_chat_paced_total ", "\nrunbookbot_chat_outbox_pending "} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(series))
		}
	}
	if st, _ := get(t, base); st != http.StatusOK {
		t.Errorf("the playground page = %d after mounting the health endpoints", st)
	}

	cancel()
	if c := <-code; c != exitOK {
		t.Fatalf("dev exit %d:\n%s", c, errs.String())
	}
	logged := strings.Split(strings.TrimSpace(errs.String()), "\n")
	ready := false
	for _, l := range logged {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("with --log-format json, a log line is not JSON: %q", l)
		}
		if rec["msg"] == "runbookbot ready" && rec["level"] == "INFO" {
			ready = true
		}
	}
	if !ready {
		t.Errorf("no JSON record of \"runbookbot ready\" in:\n%s", errs.String())
	}
}

func TestLogFormatFromEnvironment(t *testing.T) {
	t.Setenv("RUNBOOKBOT_LOG_FORMAT", "xml")
	code, _, errs := cli(t, "", "dev", "--addr", "127.0.0.1:0")
	if code != exitUsage || !strings.Contains(errs, `RUNBOOKBOT_LOG_FORMAT="xml": want text or json`) {
		t.Errorf("dev with RUNBOOKBOT_LOG_FORMAT=xml: exit %d, %q", code, errs)
	}
	code, _, errs = cli(t, "", "serve", "--log-format", "yaml")
	if code != exitUsage || !strings.Contains(errs, "want text or json") {
		t.Errorf("serve --log-format yaml: exit %d, %q", code, errs)
	}
	t.Setenv("RUNBOOKBOT_LOG_FORMAT", "json")
	var buf bytes.Buffer
	f := logFormat(envOr("RUNBOOKBOT_LOG_FORMAT", "text"))
	l, err := f.logger(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hello", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "hello" || rec["k"] != "v" {
		t.Errorf("RUNBOOKBOT_LOG_FORMAT=json wrote %q", buf.String())
	}
}

// readyz serves h's /readyz and returns its answer.
func readyz(t *testing.T, h *health) (int, string) {
	t.Helper()
	mux := http.NewServeMux()
	h.mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	return get(t, srv.URL+"/readyz")
}

// /readyz answers 503 and says which condition fails and why: the chat
// platform cannot be reached, the store does not take writes.
func TestReadyzSaysWhyNot(t *testing.T) {
	t.Run("starting", func(t *testing.T) {
		st, body := readyz(t, newHealth(nil))
		if st != http.StatusServiceUnavailable || !strings.Contains(body, "[-]starting") {
			t.Errorf("before the bot started: %d %q", st, body)
		}
	})

	t.Run("Slack unreachable", func(t *testing.T) {
		emu := slackemu.New(slackemu.Options{BotToken: "xoxb-t", AppToken: "xapp-t"})
		if err := emu.Start(); err != nil {
			t.Fatal(err)
		}
		defer emu.Close()
		probe := slackProbe(botOptions{botToken: "xoxb-t", appToken: "xapp-t", apiURL: emu.APIURL()})
		h := newHealth([]readyCheck{{"slack", chatCheck(nil, probe, 0)}})
		if st, body := readyz(t, h); st != http.StatusOK || !strings.Contains(body, "[+]slack ok") {
			t.Fatalf("with Slack up: %d %q", st, body)
		}
		emu.Close()
		st, body := readyz(t, h)
		if st != http.StatusServiceUnavailable || !strings.Contains(body, "[-]slack: slack auth.test:") {
			t.Errorf("with Slack down: %d %q", st, body)
		}
	})

	t.Run("embedded store directory gone", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		st, err := embedded.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		h := newHealth([]readyCheck{{"store", storeCheck(st, dir)}})
		if code, body := readyz(t, h); code != http.StatusOK {
			t.Fatalf("with a writable store: %d %q", code, body)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		code, body := readyz(t, h)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]store: store directory "+dir+" does not take writes") {
			t.Errorf("with the directory gone: %d %q", code, body)
		}
	})

	t.Run("Redis store read-only", func(t *testing.T) {
		srv := redistest.Start(t)
		ctx := context.Background()
		st, err := redis.NewStore(ctx, srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		h := newHealth([]readyCheck{{"store", storeCheck(st, srv.URL())}})
		if code, body := readyz(t, h); code != http.StatusOK {
			t.Fatalf("with Redis writable: %d %q", code, body)
		}
		// A replica refuses writes, as a failed-over primary does.
		if err := st.Client().Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
			t.Fatal(err)
		}
		code, body := readyz(t, h)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]store: redis store") || !strings.Contains(body, "READONLY") {
			t.Errorf("with Redis read-only: %d %q", code, body)
		}
	})

	t.Run("a slow check times out", func(t *testing.T) {
		h := newHealth([]readyCheck{{"store", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}})
		h.timeout = 50 * time.Millisecond
		code, body := readyz(t, h)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]store: context deadline exceeded") {
			t.Errorf("a hanging check: %d %q", code, body)
		}
	})
}

// /readyz follows the Socket Mode connection itself: when Slack drops the
// socket and cannot be reached again, serve answers 503 naming Slack (while
// the Web API's auth.test would still pass); once it reconnects, 200.
func TestReadyzFollowsTheSlackConnection(t *testing.T) {
	h := newE2E(t, false)
	h.stop()
	h.opts.listen = "127.0.0.1:0"
	h.start()
	url := "http://" + h.rb.addr + "/readyz"
	waitReady := func(what string, want int, says string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, body := get(t, url)
			if st == want && strings.Contains(body, says) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz = %d %q, want %d with %q", what, st, body, want, says)
			}
			time.Sleep(20 * time.Millisecond) // polling /readyz with a deadline
		}
	}
	waitReady("connected", http.StatusOK, "[+]slack ok")
	h.emu.RefuseConnections(true)
	h.emu.DropConnections()
	waitReady("socket lost", http.StatusServiceUnavailable, "[-]slack: not connected")
	if st, body := get(t, url); !strings.Contains(body, "[+]store ok") {
		t.Errorf("with Slack down the store is still fine: %d %q", st, body)
	}
	h.emu.RefuseConnections(false)
	waitReady("reconnected", http.StatusOK, "[+]slack ok")
}
