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
	// NonMarketplaceApp applies the limits Slack has given apps outside
	// the Marketplace since 2025 on conversations.history and
	// conversations.replies: about one request per minute. It is applied
	// on top of Limits.
	NonMarketplaceApp bool
}

// Slack's rate-limit tiers: calls per minute, per method, per workspace.
// A tier allows its whole minute's quota as a burst (as Slack does: 130
// concurrent chat.postEphemeral calls get 100 answers and 30 × 429), then
// one call every minute/quota.
var (
	Tier1 = tier(1)
	Tier2 = tier(20)
	Tier3 = tier(50)
	Tier4 = tier(100)
)

func tier(perMinute int) Limit {
	return Limit{Burst: perMinute, Every: time.Minute / time.Duration(perMinute)}
}

// DefaultLimits returns Slack's documented limits for the methods the
// emulator serves:
//
//   - chat.postMessage (special): about 1 message per second per channel,
//     with short bursts (5);
//   - incoming-webhook: the same, per webhook channel;
//   - Tier 2 (20/min): usergroups.list, usergroups.users.list, users.list,
//     conversations.list;
//   - Tier 3 (50/min): chat.update, chat.delete, reactions.add,
//     conversations.info, conversations.open, conversations.history,
//     conversations.replies, apps.connections.open;
//   - Tier 4 (100/min): chat.postEphemeral, views.open, views.push,
//     views.update, users.info;
//   - unlimited: auth.test and chat.getPermalink (special), and
//     response_url posts (limited to 5 uses in 30 minutes instead).
//
// Slack's workspace-wide cap on chat.postMessage ("several hundred per
// minute") is not modelled.
func DefaultLimits() map[string]Limit {
	out := map[string]Limit{
		"chat.postMessage": {Burst: 5, Every: time.Second, PerChannel: true},
		"incoming-webhook": {Burst: 5, Every: time.Second, PerChannel: true},
	}
	for tier, methods := range map[Limit][]string{
		Tier2: {"usergroups.list", "usergroups.users.list", "users.list", "conversations.list"},
		Tier3: {"chat.update", "chat.delete", "reactions.add", "conversations.info", "conversations.open",
			"conversations.history", "conversations.replies", "apps.connections.open"},
		Tier4: {"chat.postEphemeral", "views.open", "views.push", "views.update", "users.info"},
	} {
		for _, m := range methods {
			out[m] = tier
		}
	}
	return out
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
	if o.NonMarketplaceApp {
		lim := make(map[string]Limit, len(l.limits)+2)
		for k, v := range l.limits {
			lim[k] = v
		}
		lim["conversations.history"] = Tier1
		lim["conversations.replies"] = Tier1
		l.limits = lim
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
