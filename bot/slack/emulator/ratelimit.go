package emulator

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// Limit is a token bucket: up to Burst calls at once, then one more call
// every Every.
type Limit struct {
	Burst      int
	Every      time.Duration
	PerChannel bool // one bucket per channel instead of one per workspace
}

// RateLimitOptions configure HTTP 429 answers. The zero value means "on,
// with DefaultLimits".
type RateLimitOptions struct {
	// Disabled turns rate limiting off.
	Disabled bool
	// Limits maps a Web API method name (or "incoming-webhook") to its
	// bucket. Nil means DefaultLimits(); methods not listed are unlimited.
	Limits map[string]Limit
}

// DefaultLimits returns Slack-like limits:
//
//   - chat.postMessage: about 1 message per second per channel, bursts of 5;
//   - incoming-webhook: the same, per webhook channel;
//   - chat.update: Tier 3, 50 per minute per workspace, bursts of 20;
//   - chat.postEphemeral, views.open, views.update, users.info: Tier 4,
//     100 per minute, bursts of 50.
func DefaultLimits() map[string]Limit {
	tier4 := Limit{Burst: 50, Every: 600 * time.Millisecond}
	return map[string]Limit{
		"chat.postMessage":   {Burst: 5, Every: time.Second, PerChannel: true},
		"incoming-webhook":   {Burst: 5, Every: time.Second, PerChannel: true},
		"chat.update":        {Burst: 20, Every: 1200 * time.Millisecond},
		"chat.postEphemeral": tier4,
		"views.open":         tier4,
		"views.update":       tier4,
		"users.info":         tier4,
	}
}

type bucket struct {
	tokens float64
	last   time.Time
}

type limiter struct {
	disabled bool
	limits   map[string]Limit
	buckets  map[string]*bucket
}

func newLimiter(o RateLimitOptions) *limiter {
	l := &limiter{disabled: o.Disabled, limits: o.Limits, buckets: map[string]*bucket{}}
	if l.limits == nil {
		l.limits = DefaultLimits()
	}
	return l
}

// take spends one token for method (and channel, for per-channel limits).
// When the bucket is empty it returns false and the whole seconds until a
// token is available (at least 1), as Slack's Retry-After.
func (l *limiter) take(now time.Time, method, channel string) (ok bool, retryAfter int) {
	lim, found := l.limits[method]
	if l.disabled || !found || lim.Burst <= 0 || lim.Every <= 0 {
		return true, 0
	}
	key := method
	if lim.PerChannel {
		key += "/" + channel
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: float64(lim.Burst), last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(float64(lim.Burst), b.tokens+float64(el)/float64(lim.Every))
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) * float64(lim.Every))
	return false, max(1, int(math.Ceil(wait.Seconds())))
}

// SetRateLimiting turns rate limiting on or off at run time. Turning it on
// again starts with full buckets.
func (s *Server) SetRateLimiting(enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limiter.disabled = !enabled
	s.limiter.buckets = map[string]*bucket{}
}

// SetLimit sets (or, with a zero Limit, removes) the bucket for one method.
func (s *Server) SetLimit(method string, l Limit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lim := make(map[string]Limit, len(s.limiter.limits)+1)
	for k, v := range s.limiter.limits {
		lim[k] = v
	}
	if l == (Limit{}) {
		delete(lim, method)
	} else {
		lim[method] = l
	}
	s.limiter.limits = lim
	for k := range s.limiter.buckets {
		if k == method || len(k) > len(method) && k[:len(method)+1] == method+"/" {
			delete(s.limiter.buckets, k)
		}
	}
}

// rateLimitLocked spends a token; if none is left it counts the 429 and
// returns the Retry-After seconds. Caller holds s.mu.
func (s *Server) rateLimitLocked(method, channel string) (retryAfter int, limited bool) {
	ok, ra := s.limiter.take(s.now(), method, channel)
	if ok {
		return 0, false
	}
	s.rateLimited++
	s.notifyLocked()
	return ra, true
}

// write429 answers like Slack: HTTP 429, an integer Retry-After header and
// {"ok":false,"error":"ratelimited"}.
func write429(w http.ResponseWriter, retryAfter int) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(`{"ok":false,"error":"ratelimited"}`))
}
