package discord

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// limits learns Discord's rate limits from the headers of every response
// (X-RateLimit-Remaining, -Reset-After, -Global, Retry-After on a 429),
// per route and major parameter as Discord buckets them, so the platform
// can refuse a call it knows would be rate limited before sending it, and
// the bot's outbox waits instead of collecting 429s. discordgo's own
// limiter keys some routes per URL (thread creation per message), so it
// cannot know those buckets are shared; this one can.
type limits struct {
	mu      sync.Mutex
	now     func() time.Time
	buckets map[string]*window
	global  time.Time // no call before this (after a global 429)
	calls   atomic.Int64
	hits    atomic.Int64 // 429s received
}

// window is what the last response said about a bucket.
type window struct {
	remaining int
	reset     time.Time
}

func newLimits() *limits {
	return &limits{now: time.Now, buckets: map[string]*window{}}
}

// routeKey names a request's bucket: the method and the path with ids
// replaced, except the major parameters (channel, guild, webhook and
// its token, interaction), which Discord buckets separately.
func routeKey(method, path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	// Drop "api" and a version.
	if len(segs) > 0 && segs[0] == "api" {
		segs = segs[1:]
		if len(segs) > 0 && strings.HasPrefix(segs[0], "v") {
			segs = segs[1:]
		}
	}
	for i := range segs {
		major := i == 1 && (segs[0] == "channels" || segs[0] == "guilds" || segs[0] == "webhooks" || segs[0] == "interactions") ||
			i == 2 && (segs[0] == "webhooks" || segs[0] == "interactions")
		switch {
		case major:
		case i > 0 && (segs[i-1] == "reactions"):
			segs[i] = ":emoji"
		case snowflake.MatchString(segs[i]):
			segs[i] = ":id"
		}
	}
	return method + " " + strings.Join(segs, "/")
}

// wait says how long a call on route must wait; zero when it may go now.
func (l *limits) wait(route string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var d time.Duration
	if now.Before(l.global) {
		d = l.global.Sub(now)
	}
	if w := l.buckets[route]; w != nil && w.remaining <= 0 && now.Before(w.reset) {
		d = max(d, w.reset.Sub(now))
	}
	return d
}

// observe records what a response said about its bucket.
func (l *limits) observe(route string, status int, h http.Header) {
	if status == http.StatusTooManyRequests {
		l.hits.Add(1)
	}
	after := seconds(h.Get("X-RateLimit-Reset-After"))
	if status == http.StatusTooManyRequests {
		if ra := seconds(h.Get("Retry-After")); ra > after {
			after = ra
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if h.Get("X-RateLimit-Global") != "" && status == http.StatusTooManyRequests {
		l.global = now.Add(max(after, time.Second))
		return
	}
	rem := h.Get("X-RateLimit-Remaining")
	if rem == "" && status != http.StatusTooManyRequests {
		return
	}
	n, err := strconv.Atoi(rem)
	if err != nil || status == http.StatusTooManyRequests {
		n = 0
	}
	l.buckets[route] = &window{remaining: n, reset: now.Add(after)}
}

// take spends one call of route's known bucket ahead of its response, so
// calls sent before the response arrives are counted too.
func (l *limits) take(route string) {
	l.calls.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := l.buckets[route]; w != nil && l.now().Before(w.reset) {
		w.remaining--
	}
}

func seconds(s string) time.Duration {
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// transport sends discordgo's requests to the configured base URL (only
// the scheme and host change: discordgo's endpoints are fixed at init) and
// feeds the rate-limit headers of every response to limits.
type transport struct {
	base *url.URL // nil: Discord itself
	next http.RoundTripper
	lim  *limits
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.base != nil {
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.Host = t.base.Scheme, t.base.Host, ""
	}
	route := routeKey(r.Method, r.URL.Path)
	t.lim.take(route)
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	t.lim.observe(route, resp.StatusCode, resp.Header)
	return resp, nil
}
