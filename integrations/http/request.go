package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// maxRetries caps the retries param.
const maxRetries = 10

// request is a step's params, checked.
type request struct {
	method string
	url    *url.URL
	// shown is the URL for logs, errors and the output: the runbook's
	// template when the URL is templated (the rendered one may hold a
	// secret), else the URL without userinfo and with credentials masked.
	shown   string
	redact  func(string) string // masks the execution's secrets
	header  http.Header
	body    []byte
	timeout time.Duration // per attempt; 0 = only the step's
	retries int
	backoff time.Duration
	expect  []statusRange
}

type statusRange struct{ lo, hi int }

func (r statusRange) String() string {
	if r.lo == r.hi {
		return strconv.Itoa(r.lo)
	}
	if r.hi == r.lo+99 && r.lo%100 == 0 {
		return fmt.Sprintf("%dxx", r.lo/100)
	}
	return fmt.Sprintf("%d-%d", r.lo, r.hi)
}

func (rq *request) expected(status int) bool {
	for _, r := range rq.expect {
		if status >= r.lo && status <= r.hi {
			return true
		}
	}
	return false
}

func (rq *request) expectText() string {
	s := make([]string, len(rq.expect))
	for i, r := range rq.expect {
		s[i] = r.String()
	}
	return strings.Join(s, " or ")
}

// parseRequest reads and checks the params of a call.
func (h *handler) parseRequest(method string, c *engine.Call) (*request, error) {
	rq := &request{method: method, header: http.Header{}, retries: h.retries, backoff: h.backoff, redact: redactor(c)}
	u, err := parseURL(c.Params["url"])
	if err != nil {
		return nil, err
	}
	rq.url = u
	if tmpl := urlTemplate(c); tmpl != "" {
		rq.shown = rq.redact(RedactURLTemplate(tmpl))
	} else {
		rq.shown = rq.redact(RedactURL(u))
	}
	if err := addHeaders(rq.header, c.Params["headers"]); err != nil {
		return nil, err
	}
	if rq.body, err = body(c.Params, rq.header); err != nil {
		return nil, err
	}
	if rq.timeout, err = c.Duration("timeout", 0); err != nil {
		return nil, err
	}
	if rq.backoff, err = c.Duration("retryBackoff", rq.backoff); err != nil {
		return nil, err
	}
	if v, ok := c.Params["retries"]; ok && !absent(v) {
		n, err := wholeNumber(v)
		if err != nil || n < 0 || n > maxRetries {
			return nil, fmt.Errorf("param retries must be a whole number from 0 to %d, got %s", maxRetries, engine.Stringify(v))
		}
		rq.retries = int(n)
	}
	if rq.expect, err = parseExpect(c.Params["expectStatus"]); err != nil {
		return nil, err
	}
	return rq, nil
}

func absent(v any) bool {
	s, isStr := v.(string)
	return v == nil || isStr && strings.TrimSpace(s) == ""
}

// parseURL checks an http(s) URL. Its errors never echo the URL, which
// may hold credentials.
func parseURL(v any) (*url.URL, error) {
	raw, ok := v.(string)
	if !ok || strings.TrimSpace(raw) == "" {
		return nil, errors.New("param url is empty")
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("param url is not a valid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("param url must start with http:// or https:// (got scheme %q)", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("param url has no host")
	}
	return u, nil
}

func addHeaders(h http.Header, v any) error {
	if absent(v) {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return errors.New("param headers must be a mapping of header name to value")
	}
	for name, val := range m {
		if name == "" || strings.ContainsAny(name, " \t\r\n:") {
			return fmt.Errorf("param headers: %q is not a valid header name", name)
		}
		vals := []any{val}
		if list, ok := val.([]any); ok {
			vals = list
		}
		for _, x := range vals {
			// Trimmed: tokens read from files often end in a newline,
			// which HTTP forbids.
			s := strings.TrimSpace(engine.Stringify(x))
			if strings.ContainsAny(s, "\r\n") {
				// The value itself is not shown: it may be a secret.
				return fmt.Errorf("param headers: the value of %s contains a line break", http.CanonicalHeaderKey(name))
			}
			h.Add(name, s)
		}
	}
	return nil
}

func body(p map[string]any, h http.Header) ([]byte, error) {
	j, hasJSON := p["json"]
	b, hasBody := p["body"]
	if hasJSON && hasBody && j != nil && b != nil {
		return nil, errors.New("params json and body are both set; use one")
	}
	switch {
	case hasJSON && j != nil:
		data, err := json.Marshal(j)
		if err != nil {
			return nil, fmt.Errorf("param json cannot be encoded: %v", err)
		}
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/json")
		}
		return data, nil
	case hasBody && b != nil:
		return []byte(engine.Stringify(b)), nil
	}
	return nil, nil
}

// wholeNumber accepts ints, integral floats and numeric strings.
func wholeNumber(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) {
			return 0, fmt.Errorf("%v is not a whole number", x)
		}
		return int64(x), nil
	case string:
		return strconv.ParseInt(strings.TrimSpace(x), 10, 64)
	}
	return 0, fmt.Errorf("%s is not a whole number", engine.Stringify(v))
}

// parseExpect reads expectStatus: 200, "200", "2xx" or a list of them.
func parseExpect(v any) ([]statusRange, error) {
	if absent(v) {
		return []statusRange{{200, 299}}, nil
	}
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	if len(list) == 0 {
		return nil, errors.New("param expectStatus is an empty list")
	}
	var out []statusRange
	for _, x := range list {
		s := strings.ToLower(strings.TrimSpace(engine.Stringify(x)))
		if len(s) == 3 && strings.HasSuffix(s, "xx") && s[0] >= '1' && s[0] <= '5' {
			lo := int(s[0]-'0') * 100
			out = append(out, statusRange{lo, lo + 99})
			continue
		}
		n, err := wholeNumber(x)
		if err != nil || n < 100 || n > 599 {
			return nil, fmt.Errorf("param expectStatus: %q is not an HTTP status or class such as 2xx", engine.Stringify(x))
		}
		out = append(out, statusRange{int(n), int(n)})
	}
	return out, nil
}

// sensitiveQuery matches query parameter names whose values are masked.
var sensitiveQuery = []string{"token", "secret", "password", "passwd", "pwd", "key", "auth", "sig", "credential", "session", "code"}

// RedactURL returns u for logs and messages: without userinfo and
// fragment, with the values of credential-like query parameters (token,
// api_key, password, signature...) replaced by REDACTED.
func RedactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" {
		q, err := url.ParseQuery(c.RawQuery)
		if err != nil {
			c.RawQuery = "REDACTED"
		} else {
			for name, vals := range q {
				if credentialName(name) {
					for i := range vals {
						vals[i] = "REDACTED"
					}
				}
			}
			c.RawQuery = q.Encode()
		}
	}
	return c.String()
}

// redactor returns the call's secret masking, or no masking when the
// call has none (tests, dry runs of static params).
func redactor(c *engine.Call) func(string) string {
	if c.Redact != nil {
		return c.Redact
	}
	return func(s string) string { return s }
}

// urlTemplate is the url param as the runbook wrote it when it holds a
// template, else "".
func urlTemplate(c *engine.Call) string {
	if c.Step == nil {
		return ""
	}
	tmpl, ok := c.Step.Params.Values["url"].(string)
	if !ok || !engine.HasTemplate(tmpl) {
		return ""
	}
	return strings.TrimSpace(tmpl)
}

// RedactURLTemplate is RedactURL for a URL template as written in a
// runbook: userinfo is dropped and the literal values of credential-like
// query parameters are replaced by REDACTED; template expressions are kept
// as written, since they show where a value comes from, not the value.
func RedactURLTemplate(tmpl string) string {
	rest, scheme := tmpl, ""
	if i := strings.Index(rest, "://"); i >= 0 {
		scheme, rest = rest[:i+3], rest[i+3:]
	}
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		authority = authority[i+1:]
	}
	path, query := tail, ""
	if i := strings.Index(tail, "?"); i >= 0 {
		path, query = tail[:i], tail[i+1:]
	}
	if query == "" {
		return scheme + authority + path
	}
	parts := strings.Split(query, "&")
	for i, p := range parts {
		name, value, ok := strings.Cut(p, "=")
		if ok && credentialName(name) && !engine.HasTemplate(value) {
			parts[i] = name + "=REDACTED"
		}
	}
	return scheme + authority + path + "?" + strings.Join(parts, "&")
}

// credentialName reports whether a query parameter name looks like it
// carries a credential.
func credentialName(name string) bool {
	lower := strings.ToLower(name)
	for _, s := range sensitiveQuery {
		if strings.Contains(lower, s) {
			return true
		}
	}
	return false
}

// newHTTPRequest builds one attempt's request.
func (rq *request) newHTTPRequest(ctx context.Context) (*http.Request, error) {
	var rd io.Reader = http.NoBody
	if rq.body != nil {
		rd = bytes.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, rq.url.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: cannot build the request", rq.method, rq.shown)
	}
	req.Header = rq.header.Clone()
	return req, nil
}

func estimate(s *engine.Step) time.Duration {
	if v, ok := s.Params.Values["timeout"].(string); ok && !engine.HasTemplate(v) {
		if d, err := engine.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return 5 * time.Second
}

// validate checks the params that hold no template at lint time.
func validate(s *engine.Step) error {
	p := s.Params.Values
	static := func(key string) (any, bool) {
		v, ok := p[key]
		if str, isStr := v.(string); ok && isStr && engine.HasTemplate(str) {
			return nil, false
		}
		return v, ok
	}
	if v, ok := static("url"); ok {
		if _, err := parseURL(v); err != nil {
			return err
		}
	}
	if v, ok := static("expectStatus"); ok {
		if _, err := parseExpect(v); err != nil {
			return err
		}
	}
	if p["json"] != nil && p["body"] != nil {
		return errors.New("params json and body are both set; use one")
	}
	if v, ok := p["headers"]; ok && v != nil {
		if _, isMap := v.(map[string]any); !isMap {
			return errors.New("param headers must be a mapping of header name to value")
		}
	}
	for _, key := range []string{"timeout", "retryBackoff"} {
		if v, ok := static(key); ok && !absent(v) {
			if _, err := engine.ParseDuration(engine.Stringify(v)); err != nil {
				return fmt.Errorf("param %s: %w", key, err)
			}
		}
	}
	if v, ok := static("retries"); ok && !absent(v) {
		if n, err := wholeNumber(v); err != nil || n < 0 || n > maxRetries {
			return fmt.Errorf("param retries must be a whole number from 0 to %d", maxRetries)
		}
	}
	return nil
}
