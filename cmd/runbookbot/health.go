package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	slackbot "github.com/runbookbot/runbookbot/bot/slack"
	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/embedded"
	"github.com/runbookbot/runbookbot/integrations/redis"
)

// readyCheck is one condition of readiness: nil when it holds, else why
// not (shown to whoever probes /readyz: an operator, never a chat user).
type readyCheck struct {
	name  string
	check func(ctx context.Context) error
}

// health answers /healthz (the process is alive and serving) and /readyz
// (every readiness check holds: 200, else 503 with the reasons). Before the
// bot has started, /readyz answers 503 "starting".
type health struct {
	timeout time.Duration

	mu     sync.Mutex
	checks []readyCheck
}

func newHealth(checks []readyCheck) *health {
	return &health{timeout: 3 * time.Second, checks: checks}
}

// set replaces the readiness checks (once the bot has started).
func (h *health) set(checks []readyCheck) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = checks
}

// mount adds /healthz and /readyz to mux.
func (h *health) mount(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", h.readyz)
}

// readyz runs every check concurrently, each bounded by h.timeout, and
// lists them: "[+]chat ok" or "[-]store: <reason>".
func (h *health) readyz(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	checks := h.checks
	h.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if checks == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "[-]starting: the bot has not connected yet")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = c.check(ctx) })
	}
	wg.Wait()
	var lines []string
	failed := false
	for i, c := range checks {
		if errs[i] != nil {
			failed = true
			lines = append(lines, fmt.Sprintf("[-]%s: %s", c.name, oneLine(errs[i].Error())))
		} else {
			lines = append(lines, fmt.Sprintf("[+]%s ok", c.name))
		}
	}
	if failed {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// connectionState is what a chat client can say about its connection.
// Declared here, its consumer; a client that does not implement it is
// checked through its Web API instead.
type connectionState interface {
	Connected() bool
}

// readyChecks are a running bot's readiness conditions: each chat platform
// is connected (Slack's Socket Mode connection is up, Discord's gateway has
// said READY) and the store takes writes. In Slack's HTTP mode there is no
// connection to watch: Slack is asked through slackProbe (auth.test).
func (r *runningBot) readyChecks(slackProbe func(ctx context.Context) error) []readyCheck {
	var checks []readyCheck
	if r.client != nil {
		var conn any = r.client
		if r.slackHTTP != nil {
			conn = nil // no socket: the probe says whether Slack answers
		}
		checks = append(checks, readyCheck{"slack", chatCheck(conn, slackProbe, 5*time.Second)})
	}
	if r.discord != nil {
		checks = append(checks, readyCheck{"discord", chatCheck(r.discord, nil, 0)})
	}
	return append(checks, readyCheck{"store", storeCheck(r.store, "")})
}

// healthHandlers returns the bot's /healthz and /readyz.
func (r *runningBot) healthHandlers() *health {
	if r.health == nil {
		r.health = newHealth(r.readyChecks(nil))
	}
	return r.health
}

// slackProbe calls Slack's auth.test with serve's tokens: nil without
// Slack.
func slackProbe(o botOptions) func(ctx context.Context) error {
	if o.botToken == "" {
		return nil
	}
	api := slackbot.NewAPI(slackbot.Config{BotToken: o.botToken, AppToken: o.appToken, APIURL: o.apiURL})
	return func(ctx context.Context) error {
		_, err := slackbot.Check(ctx, api)
		return err
	}
}

// readyOnce is a client that signals once it has connected (Discord's
// READY).
type readyOnce interface {
	Ready() <-chan struct{}
}

// chatCheck reports the connection when the client can tell, else calls
// probe (at most every 5 s, so probes do not spend the platform's rate
// limit, when every is 5 s). With neither, the check holds.
func chatCheck(client any, probe func(ctx context.Context) error, every time.Duration) func(ctx context.Context) error {
	switch c := client.(type) {
	case connectionState:
		return func(context.Context) error {
			if !c.Connected() {
				return errors.New("not connected")
			}
			return nil
		}
	case readyOnce:
		return func(context.Context) error {
			select {
			case <-c.Ready():
				return nil
			default:
				return errors.New("not connected yet")
			}
		}
	}
	if probe == nil {
		return func(context.Context) error { return nil }
	}
	var mu sync.Mutex
	var last time.Time
	var lastErr error
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if !last.IsZero() && time.Since(last) < every {
			return lastErr
		}
		lastErr = probe(ctx)
		last = time.Now()
		return lastErr
	}
}

// storeWritable is what a store can say about taking writes. Declared
// here, its consumer; stores without it are probed below.
type storeWritable interface {
	Writable(ctx context.Context) error
}

// storeCheck proves the store takes writes without touching the event
// log: Redis stores a short-lived probe key, the embedded store's
// directory takes and syncs a probe file.
func storeCheck(store engine.Store, where string) func(ctx context.Context) error {
	host, _ := os.Hostname()
	switch s := store.(type) {
	case *embedded.Store:
		// Writable knows a failed write; the probe finds a directory that
		// is gone or full before any write fails.
		return func(ctx context.Context) error {
			if err := s.Writable(ctx); err != nil {
				return err
			}
			return probeDir(s.Dir())
		}
	case storeWritable:
		return s.Writable
	case *redis.Store:
		key := s.Prefix() + "readyz:" + host
		return func(ctx context.Context) error {
			if err := s.Client().Set(ctx, key, time.Now().UTC().Format(time.RFC3339), time.Minute).Err(); err != nil {
				return fmt.Errorf("redis store %s does not take writes: %w", where, err)
			}
			return nil
		}
	}
	return func(context.Context) error { return nil }
}

// probeDir writes, syncs and removes a file in dir.
func probeDir(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return fmt.Errorf("store directory %s does not take writes: %w", dir, err)
	}
	name := f.Name()
	defer os.Remove(name)
	_, err = f.WriteString("ok\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store directory %s does not take writes: %w", filepath.Dir(name), err)
	}
	return nil
}

// devServer serves the playground: the Slack emulator, and the bot's
// /healthz, /readyz, /metrics and HTTP API (/api/v1, beside the emulator's
// Web API at /api/), on one address. It owns its serving goroutine; close
// waits for it.
type devServer struct {
	srv     *http.Server
	health  *health
	metrics atomic.Pointer[http.Handler]
	api     atomic.Pointer[http.Handler]
	done    chan struct{}
}

// serveDev listens on addr and serves emu there; the bot's endpoints
// answer 503 until attach.
func serveDev(emu *slackemu.Server, addr string) (*devServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	emu.SetURL("http://" + l.Addr().String() + "/")
	d := &devServer{health: newHealth(nil), done: make(chan struct{})}
	mux := http.NewServeMux()
	d.health.mount(mux)
	mux.Handle("/metrics", once(&d.metrics))
	// More specific than the emulator's /api/: the bot's API is not
	// swallowed by the emulated Slack Web API.
	mux.Handle("/api/v1/", once(&d.api))
	mux.Handle("/", emu.Handler())
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(d.done)
		_ = d.srv.Serve(l)
	}()
	return d, nil
}

// once serves the handler in p once it is set, 503 "starting" before.
func once(p *atomic.Pointer[http.Handler]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := p.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.Error(w, "starting", http.StatusServiceUnavailable)
	})
}

// attach makes /readyz, /metrics and /api/v1 answer for rb.
func (d *devServer) attach(rb *runningBot, slackProbe func(ctx context.Context) error) {
	d.health.set(rb.readyChecks(slackProbe))
	h := rb.metrics.Handler()
	d.metrics.Store(&h)
	if rb.api != nil {
		mux := http.NewServeMux()
		rb.api.mountAPI(mux)
		var api http.Handler = mux
		d.api.Store(&api)
	}
}

// close stops serving and waits for the server's goroutine.
func (d *devServer) close() {
	_ = d.srv.Close()
	<-d.done
}
