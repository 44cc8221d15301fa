package emulator

import (
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Limit is a Discord rate-limit bucket: Requests per Window. The window
// starts with the first request and resets Window later, as
// X-RateLimit-Reset-After tells the client.
type Limit struct {
	Requests int
	Window   time.Duration
}

// RateLimitOptions configure rate limiting. The zero value means "on, with
// DefaultLimits and Discord's global limit of 50 requests per second".
type RateLimitOptions struct {
	// Disabled turns all rate limiting off (no headers, no 429s).
	Disabled bool
	// Limits maps a route key (see Routes, e.g.
	// "POST /channels/{channel_id}/messages") to its bucket. Buckets are
	// per major parameter: channel, guild, or webhook. Nil means
	// DefaultLimits(); routes not listed have no bucket.
	Limits map[string]Limit
	// Global is the per-bot limit over all routes except interaction
	// callbacks and webhooks with a token; zero means 50 per second.
	// A negative Requests disables it.
	Global Limit
}

// DefaultLimits returns Discord-like per-route buckets:
//
//   - create message: 5 per 5s per channel;
//   - edit message: 5 per 5s per channel (shared by all messages of the
//     channel, so a client tracking buckets per URL can still hit a 429);
//   - delete message: 5 per second per channel;
//   - reactions: 1 per 250ms per channel;
//   - thread creation: 5 per 5s per channel;
//   - execute webhook and interaction follow-ups/edits: 5 per 2s per
//     webhook token.
func DefaultLimits() map[string]Limit {
	five := Limit{Requests: 5, Window: 5 * time.Second}
	hook := Limit{Requests: 5, Window: 2 * time.Second}
	wh := "/webhooks/{webhook_id}/{webhook_token}"
	return map[string]Limit{
		"POST /channels/{channel_id}/messages":                                   five,
		"PATCH /channels/{channel_id}/messages/{message_id}":                     five,
		"DELETE /channels/{channel_id}/messages/{message_id}":                    {Requests: 5, Window: time.Second},
		"PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me": {Requests: 1, Window: 250 * time.Millisecond},
		"POST /channels/{channel_id}/messages/{message_id}/threads":              five,
		"POST /channels/{channel_id}/threads":                                    five,
		"POST " + wh:                                                             hook,
		"PATCH " + wh + "/messages/@original":                                    hook,
		"PATCH " + wh + "/messages/{message_id}":                                 hook,
	}
}

type window struct {
	start time.Time
	count int
}

type limiter struct {
	disabled bool
	limits   map[string]Limit
	global   Limit
	windows  map[string]*window
	gwin     *window
}

func newLimiter(o RateLimitOptions) *limiter {
	l := &limiter{disabled: o.Disabled, limits: o.Limits, global: o.Global, windows: map[string]*window{}}
	if l.limits == nil {
		l.limits = DefaultLimits()
	}
	if l.global.Requests == 0 || l.global.Window <= 0 {
		if l.global.Requests >= 0 {
			l.global = Limit{Requests: 50, Window: time.Second}
		}
	}
	return l
}

// state returns the window for key, restarted when it has expired.
func (l *limiter) state(m map[string]*window, key string, lim Limit, now time.Time) *window {
	w := m[key]
	if w == nil || !now.Before(w.start.Add(lim.Window)) {
		w = &window{start: now}
		m[key] = w
	}
	return w
}

// bucketHash is a stable opaque id for a route, like Discord's X-RateLimit-Bucket.
func bucketHash(route string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(route))
	return fmt.Sprintf("%016x", h.Sum64())
}

// majorParams identifies the bucket instance: per channel, guild, webhook.
func majorParams(p map[string]string) string {
	var b strings.Builder
	for _, k := range []string{"channel_id", "guild_id", "webhook_id", "webhook_token", "interaction_id"} {
		if v := p[k]; v != "" {
			b.WriteString("/" + v)
		}
	}
	return b.String()
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// rateLimitLocked spends one request of the call's route bucket and of the
// global limit, setting the X-RateLimit-* headers on c.hdr. When a limit
// is exhausted it counts the 429 and returns the seconds to wait and the
// scope ("user" for a route bucket, "global"). Caller holds s.mu.
func (s *Server) rateLimitLocked(c *call) (retryAfter float64, scope string) {
	l := s.limiter
	if l.disabled {
		return 0, ""
	}
	now := s.now()
	lim, has := l.limits[c.rt.key]
	has = has && lim.Requests > 0 && lim.Window > 0
	var w *window
	if has {
		w = l.state(l.windows, c.rt.key+majorParams(c.params), lim, now)
		reset := w.start.Add(lim.Window)
		c.hdr.Set("X-RateLimit-Limit", strconv.Itoa(lim.Requests))
		c.hdr.Set("X-RateLimit-Reset", strconv.FormatFloat(float64(reset.UnixMilli())/1000, 'f', 3, 64))
		c.hdr.Set("X-RateLimit-Reset-After", secs(reset.Sub(now)))
		c.hdr.Set("X-RateLimit-Bucket", bucketHash(c.rt.key))
		if w.count >= lim.Requests {
			c.hdr.Set("X-RateLimit-Remaining", "0")
			c.hdr.Set("X-RateLimit-Scope", "user")
			s.rateLimited++
			s.notifyLocked()
			return reset.Sub(now).Seconds(), "user"
		}
	}
	useGlobal := c.rt.global && l.global.Requests > 0 && l.global.Window > 0
	if useGlobal {
		if l.gwin == nil || !now.Before(l.gwin.start.Add(l.global.Window)) {
			l.gwin = &window{start: now}
		}
		if l.gwin.count >= l.global.Requests {
			c.hdr = http.Header{} // a global 429 carries no bucket headers
			c.hdr.Set("X-RateLimit-Global", "true")
			c.hdr.Set("X-RateLimit-Scope", "global")
			s.rateLimited++
			s.globalHits++
			s.notifyLocked()
			return l.gwin.start.Add(l.global.Window).Sub(now).Seconds(), "global"
		}
		l.gwin.count++
	}
	if has {
		w.count++
		c.hdr.Set("X-RateLimit-Remaining", strconv.Itoa(lim.Requests-w.count))
	}
	return 0, ""
}

// write429 answers like Discord: HTTP 429, Retry-After in whole seconds
// (rounded up), and {"message","retry_after" (float seconds),"global"}.
func write429(w http.ResponseWriter, hdr http.Header, retryAfter float64, scope string) {
	copyHeader(w.Header(), hdr)
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter))))
	writeJSON(w, http.StatusTooManyRequests, obj{
		"message":     "You are being rate limited.",
		"retry_after": math.Round(retryAfter*1000) / 1000,
		"global":      scope == "global",
	})
}

// SetRateLimiting turns rate limiting on or off at run time. Turning it on
// again starts with fresh windows.
func (s *Server) SetRateLimiting(enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limiter.disabled = !enabled
	s.limiter.windows = map[string]*window{}
	s.limiter.gwin = nil
	s.notifyLocked()
}

// SetLimit sets (or, with a zero Limit, removes) the bucket of one route
// key, e.g. "PATCH /channels/{channel_id}/messages/{message_id}".
func (s *Server) SetLimit(route string, l Limit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lim := make(map[string]Limit, len(s.limiter.limits)+1)
	for k, v := range s.limiter.limits {
		lim[k] = v
	}
	if l == (Limit{}) {
		delete(lim, route)
	} else {
		lim[route] = l
	}
	s.limiter.limits = lim
	for k := range s.limiter.windows {
		if strings.HasPrefix(k, route) {
			delete(s.limiter.windows, k)
		}
	}
}

// SetGlobalLimit changes the global limit; a negative Requests disables it.
func (s *Server) SetGlobalLimit(l Limit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limiter.global = l
	s.limiter.gwin = nil
}
