package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// maxRetryAfter caps how long a Retry-After header can make a retry wait.
const maxRetryAfter = time.Minute

// maxResponse is how much of a response body is read.
const maxResponse = 64 << 10

// request is one delivery.
type request struct {
	channel   string // "pagerduty", "webhook ops"
	method    string
	url       string
	shown     string // scheme and host only
	header    http.Header
	body      []byte
	sensitive []string // values to scrub from any text shown
}

// DeliveryError is a delivery the receiving service refused or that never
// reached it. Its text names the channel, method, scheme and host, status
// and attempts, and quotes the response scrubbed of credentials.
type DeliveryError struct {
	// Channel is "pagerduty" or "webhook NAME".
	Channel string
	// Method and URL (scheme and host only) of the request.
	Method, URL string
	// Status is the last HTTP status, 0 when no response came.
	Status int
	// Attempts is how many requests were sent.
	Attempts int
	// Detail is the service's message or the transport error, scrubbed.
	Detail string
}

func (e *DeliveryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s: ", e.Channel, e.Method, e.URL)
	if e.Status != 0 {
		fmt.Fprintf(&b, "status %d %s", e.Status, http.StatusText(e.Status))
	} else {
		b.WriteString("no response")
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

// Retryable reports whether the failure was one deliveries retry.
func (e *DeliveryError) Retryable() bool {
	return e.Status == 0 || e.Status >= 500 || e.Status == http.StatusTooManyRequests
}

// deliver sends rq, retrying 5xx, 429 and transport failures. It returns
// the response body of the successful attempt.
func (n *Notifier) deliver(ctx context.Context, rq *request) ([]byte, error) {
	attempts := n.cfg.Retries + 1
	for attempt := 1; ; attempt++ {
		data, status, retryAfter, detail := n.attempt(ctx, rq)
		if status >= 200 && status < 300 {
			return data, nil
		}
		derr := &DeliveryError{Channel: rq.channel, Method: rq.method, URL: rq.shown, Status: status, Attempts: attempt, Detail: scrub(detail, rq.sensitive)}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%v)", derr, context.Cause(ctx))
		}
		retry := derr.Retryable() && attempt < attempts
		n.log.Debug("notification delivery failed", "channel", rq.channel, "method", rq.method, "url", rq.shown, "status", status, "attempt", attempt, "retry", retry)
		if !retry {
			return nil, derr
		}
		wait := n.cfg.Backoff << (attempt - 1)
		if retryAfter > wait {
			wait = min(retryAfter, maxRetryAfter)
		}
		if err := n.cfg.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("%w (gave up waiting to retry: %v)", derr, err)
		}
	}
}

// attempt sends rq once. detail describes a failure; status is 0 when no
// response came.
func (n *Notifier) attempt(ctx context.Context, rq *request) (data []byte, status int, retryAfter time.Duration, detail string) {
	actx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, rq.method, rq.url, bytes.NewReader(rq.body))
	if err != nil {
		// The URL may hold a credential: describe the problem without it.
		return nil, 0, 0, "invalid request URL"
	}
	for k, vs := range rq.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "runbookbot")
	}
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return nil, 0, 0, transportDetail(actx, err)
	}
	defer resp.Body.Close()
	// A body cut off by a read error still says what it says: the status
	// decides the outcome.
	data, _ = io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return data, resp.StatusCode, 0, ""
	}
	return data, resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), n.cfg.Clock), responseDetail(data)
}

// transportDetail describes a failed round trip without the URL, which
// *url.Error would quote.
func transportDetail(ctx context.Context, err error) string {
	if ctx.Err() == context.DeadlineExceeded {
		return "timed out"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// responseDetail picks the service's message out of a response body:
// the message/error/errors fields of a JSON object, else the first line of
// text, shortened.
func responseDetail(data []byte) string {
	var obj map[string]any
	if json.Unmarshal(data, &obj) == nil {
		var parts []string
		for _, k := range []string{"status", "message", "error", "errors"} {
			v, ok := obj[k]
			if !ok || v == nil {
				continue
			}
			if k == "status" && len(obj) > 1 {
				continue // PagerDuty's "invalid event" adds nothing to message
			}
			if list, ok := v.([]any); ok {
				for _, x := range list {
					parts = append(parts, engine.Stringify(x))
				}
				continue
			}
			parts = append(parts, engine.Stringify(v))
		}
		if len(parts) > 0 {
			return shorten(strings.Join(parts, "; "), 300)
		}
	}
	text := strings.TrimSpace(string(data))
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = strings.TrimSpace(text[:i])
	}
	return shorten(text, 200)
}

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// scrub masks every sensitive value in s. Values shorter than four bytes
// are left alone: masking them would mangle text without protecting much.
func scrub(s string, sensitive []string) string {
	vals := append([]string(nil), sensitive...)
	// Longest first, so a value containing another is masked whole.
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if len(v) >= 4 && strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, engine.Mask)
		}
	}
	return s
}

// shownURL is a URL for messages: scheme and host, with "/…" when a path
// or query was left out (webhook paths are often credentials).
func shownURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		s += "/…"
	}
	return s
}

// urlSecrets are the parts of a URL that may be credentials: userinfo,
// path segments and query values.
func urlSecrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return []string{raw}
	}
	out := []string{raw}
	if u.User != nil {
		out = append(out, u.User.String())
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
	}
	if u.Path != "" && u.Path != "/" {
		out = append(out, u.Path)
		for _, seg := range strings.Split(u.Path, "/") {
			if len(seg) >= 12 { // token-like segments, as in chat webhook URLs
				out = append(out, seg)
			}
		}
	}
	for _, vs := range u.Query() {
		out = append(out, vs...)
	}
	return out
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, clock engine.Clock) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(clock.Now()); d > 0 {
			return d
		}
	}
	return 0
}
