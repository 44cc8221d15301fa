// Package http gives runbooks the `http` step type: get, post, put, patch
// and delete actions that call HTTP endpoints (an application's admin API,
// a webhook) with retries.
//
// Params:
//
//	url           required; http or https
//	headers       mapping of header name to value (or list of values)
//	json          any value, sent as a JSON body (Content-Type
//	              application/json unless headers set one)
//	body          raw string body (not with json)
//	timeout       per-attempt timeout ("5s"); the step's own timeout
//	              bounds the whole call, retries included
//	retries       retries after the first attempt (default Deps.Retries, 2)
//	retryBackoff  wait before the first retry, doubling after each
//	              (default 1s); a Retry-After header can lengthen it
//	expectStatus  a status, a class ("2xx") or a list of them (default 2xx)
//
// Responses with status 5xx or 429, timeouts and connection errors are
// retried; other statuses that are not expected fail at once. Waiting
// uses the call's clock.
//
// The output has status, headers (a selection: Content-Type, Location,
// Retry-After, ETag, Last-Modified, request ids), body (parsed JSON when the
// response is JSON, else text cut to 4 KB), durationMs, attempts and url
// (the URL as errors name it, below).
// Logs, errors and the output name the URL as the runbook's template when
// the url param is templated (the rendered URL may carry a secret in its
// path or query), else the URL without userinfo and with credential-like
// query values masked; either passes through the execution's secret
// masking (engine.Call.Redact), as do error messages. They never include
// request headers or bodies.
package http

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// StepType is the runbook step type the actions are registered under.
const StepType = "http"

// DefaultRetries is how often a failed call is retried when neither the
// step nor Deps says.
const DefaultRetries = 2

// maxRetryAfter caps the doubling backoff and how long a Retry-After header
// can make a retry wait.
const maxRetryAfter = time.Minute

// Deps is what the actions need.
type Deps struct {
	// Client sends the requests; nil uses a client of its own. Its
	// Timeout, if any, bounds each attempt on the wall clock.
	Client *http.Client
	// Logger receives one debug line per attempt (method, the URL as
	// shown in errors, status); nil discards them.
	Logger *slog.Logger
	// Retries is the default number of retries: 0 means DefaultRetries,
	// negative means none.
	Retries int
	// RetryBackoff is the default wait before the first retry (default 1s).
	RetryBackoff time.Duration
}

// Register adds http.get, http.post, http.put, http.patch and http.delete.
func Register(reg *engine.Registry, deps Deps) {
	h := &handler{client: deps.Client, log: deps.Logger, retries: deps.Retries, backoff: deps.RetryBackoff}
	if h.client == nil {
		h.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case h.retries == 0:
		h.retries = DefaultRetries
	case h.retries < 0:
		h.retries = 0
	}
	if h.backoff <= 0 {
		h.backoff = time.Second
	}
	for _, m := range []string{"get", "post", "put", "patch", "delete"} {
		reg.Register(engine.ActionSpec{
			Type: StepType, Action: m, Run: action{h: h, method: strings.ToUpper(m)},
			Required: []string{"url"},
			Outputs:  []string{"status", "headers", "body", "durationMs", "attempts", "url"},
			Mutating: m != "get",
			Estimate: estimate, Validate: validate,
		})
	}
}

type handler struct {
	client  *http.Client
	log     *slog.Logger
	retries int
	backoff time.Duration
}

// action is one HTTP method.
type action struct {
	h      *handler
	method string
}

var _ engine.Action = action{}

// Run sends the request, retrying on 5xx, 429, timeouts and connection
// errors with doubling backoff on the call's clock. Its error passes
// through the call's secret masking (a response may echo what was sent).
func (a action) Run(ctx context.Context, c *engine.Call) (engine.Result, error) {
	res, err := a.run(ctx, c)
	if err != nil {
		err = &redactedError{msg: redactor(c)(err.Error()), err: err}
	}
	return res, err
}

// redactedError is an error whose message has the execution's secrets
// masked, keeping the cause for errors.Is/As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func (a action) run(ctx context.Context, c *engine.Call) (engine.Result, error) {
	rq, err := a.h.parseRequest(a.method, c)
	if err != nil {
		return engine.Result{}, err
	}
	start := c.Clock.Now()
	for attempt := 1; ; attempt++ {
		out, status, retryAfter, err := a.h.attempt(ctx, c.Clock, rq)
		if out != nil {
			out["attempts"] = attempt
			out["durationMs"] = c.Clock.Now().Sub(start).Milliseconds()
			out["url"] = rq.shown
		}
		var failure error
		retry := false
		switch {
		case ctx.Err() != nil:
			return engine.Result{Output: out}, fmt.Errorf("%s %s: %w", rq.method, rq.shown, context.Cause(ctx))
		case err != nil:
			failure = err
			var te *transportError
			retry = errors.As(err, &te) && te.retry
		case rq.expected(status):
			a.h.log.Debug("http call succeeded", "method", rq.method, "url", rq.shown, "status", status, "attempt", attempt)
			return engine.Result{Output: out}, nil
		default:
			failure = fmt.Errorf("%s %s returned %d %s, expected %s%s", rq.method, rq.shown, status, http.StatusText(status), rq.expectText(), bodyExcerpt(out))
			retry = status >= 500 || status == http.StatusTooManyRequests
		}
		a.h.log.Debug("http call failed", "method", rq.method, "url", rq.shown, "status", status, "attempt", attempt, "retry", retry && attempt <= rq.retries, "err", rq.redact(failure.Error()))
		if !retry || attempt > rq.retries {
			if attempt > 1 {
				failure = fmt.Errorf("%w (after %d attempts)", failure, attempt)
			}
			return engine.Result{Output: out}, failure
		}
		wait := min(rq.backoff<<(attempt-1), max(rq.backoff, maxRetryAfter))
		if retryAfter > wait {
			wait = min(retryAfter, maxRetryAfter)
		}
		t := c.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return engine.Result{Output: out}, fmt.Errorf("%s %s: %w (waiting to retry after: %v)", rq.method, rq.shown, context.Cause(ctx), failure)
		case <-t.C():
		}
	}
}

// errAttemptTimeout ends an attempt that outlived params.timeout.
type errAttemptTimeout time.Duration

func (e errAttemptTimeout) Error() string {
	return fmt.Sprintf("no response within %s", time.Duration(e))
}

// attempt sends the request once. out is nil when no response arrived.
func (h *handler) attempt(ctx context.Context, clock engine.Clock, rq *request) (out map[string]any, status int, retryAfter time.Duration, err error) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if rq.timeout > 0 {
		t := clock.NewTimer(rq.timeout)
		defer t.Stop()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-t.C():
				cancel(errAttemptTimeout(rq.timeout))
			case <-stop:
			}
		}()
	}
	req, err := rq.newHTTPRequest(actx)
	if err != nil {
		return nil, 0, 0, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, 0, 0, newTransportError(actx, rq, "", err)
	}
	defer resp.Body.Close()
	data, truncated, err := readBody(resp.Body)
	if err != nil {
		return nil, 0, 0, newTransportError(actx, rq, "reading the response: ", err)
	}
	return responseOutput(resp, data, truncated), resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), clock.Now()), nil
}

// transportError is a failure to get a response, phrased without the
// request's headers or credentials.
type transportError struct {
	msg   string
	err   error
	retry bool
}

func (e *transportError) Error() string { return e.msg }
func (e *transportError) Unwrap() error { return e.err }

func newTransportError(actx context.Context, rq *request, what string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // url.Error repeats the full URL
	}
	var to errAttemptTimeout
	if cause := context.Cause(actx); errors.As(cause, &to) {
		err = to
	}
	return &transportError{msg: fmt.Sprintf("%s %s: %s%v", rq.method, rq.shown, what, err), err: err, retry: retryable(err)}
}

// retryable tells transient network failures from permanent ones (bad
// certificates, unknown hosts).
func retryable(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return !dns.IsNotFound
	}
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	if errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &record) {
		return false
	}
	return true
}

const (
	// maxRead bounds how much of a response is read.
	maxRead = 1 << 20
	// maxText is how much of a non-JSON body the output keeps.
	maxText = 4 << 10
)

// outputHeaders are the response headers copied to the output: useful,
// and never credentials (no Set-Cookie, no auth challenges).
var outputHeaders = []string{"Content-Type", "Content-Length", "Location", "Retry-After", "ETag", "Last-Modified", "X-Request-Id", "X-Correlation-Id"}

func readBody(r io.Reader) (data []byte, truncated bool, err error) {
	data, err = io.ReadAll(io.LimitReader(r, maxRead+1))
	if len(data) > maxRead {
		return data[:maxRead], true, err
	}
	return data, false, err
}

// responseOutput is the step output for a response.
func responseOutput(resp *http.Response, data []byte, truncated bool) map[string]any {
	headers := map[string]any{}
	for _, k := range outputHeaders {
		if v := resp.Header.Get(k); v != "" {
			headers[k] = v
		}
	}
	return map[string]any{"status": resp.StatusCode, "headers": headers, "body": decodeBody(resp.Header.Get("Content-Type"), data, truncated)}
}

// decodeBody parses JSON bodies; anything else (or JSON that does not
// parse) is text cut to maxText.
func decodeBody(contentType string, data []byte, truncated bool) any {
	if isJSON(contentType) && !truncated && len(strings.TrimSpace(string(data))) > 0 {
		var v any
		if err := json.Unmarshal(data, &v); err == nil {
			return v
		}
	}
	return cutText(strings.TrimSpace(string(data)), maxText)
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// cutText cuts s to at most n bytes on a rune boundary, saying so.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "… (" + strconv.Itoa(len(s)-cut) + " bytes cut)"
}

// bodyExcerpt is ": <start of the body>" for error messages, or "".
func bodyExcerpt(out map[string]any) string {
	if out == nil {
		return ""
	}
	var s string
	switch b := out["body"].(type) {
	case string:
		s = b
	case nil:
	default:
		data, _ := json.Marshal(b)
		s = string(data)
	}
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return ""
	}
	return ": " + cutText(s, 200)
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
