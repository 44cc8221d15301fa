package emulator

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

func wantRateLimited(t *testing.T, err error, after time.Duration) {
	t.Helper()
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) {
		t.Fatalf("want *slack.RateLimitedError, got %T %v", err, err)
	}
	if rl.RetryAfter != after {
		t.Fatalf("RetryAfter = %v, want %v", rl.RetryAfter, after)
	}
}

func TestPostMessageRateLimitPerChannel(t *testing.T) {
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now})
	other := h.srv.AddChannel("other")
	post := func(ch string) error {
		_, _, err := h.api.PostMessage(ch, slack.MsgOptionText("x", false))
		return err
	}
	for i := range 5 { // the burst
		if err := post(h.ops); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	wantRateLimited(t, post(h.ops), time.Second)
	wantRateLimited(t, post("#ops"), time.Second) // same bucket by name
	if n := h.srv.RateLimited(); n != 2 {
		t.Fatalf("RateLimited = %d", n)
	}
	if err := post(other); err != nil {
		t.Fatalf("other channel limited: %v", err)
	}
	clk.Advance(time.Second) // one token back
	if err := post(h.ops); err != nil {
		t.Fatal(err)
	}
	wantRateLimited(t, post(h.ops), time.Second)
	clk.Advance(500 * time.Millisecond)
	wantRateLimited(t, post(h.ops), time.Second) // half a token: still rounds up to 1s

	// On the wire: 429, integer Retry-After, {"ok":false,"error":"ratelimited"}.
	resp, err := http.PostForm(h.srv.APIURL()+"chat.postMessage", url.Values{
		"token": {h.srv.BotToken()}, "channel": {h.ops}, "text": {"x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || body.String() != `{"ok":false,"error":"ratelimited"}` {
		t.Fatalf("429 response: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if got := len(h.srv.Messages(h.ops)); got != 6 {
		t.Fatalf("stored %d messages, want 6", got)
	}

	h.srv.SetRateLimiting(false)
	for range 20 {
		if err := post(h.ops); err != nil {
			t.Fatalf("limited while disabled: %v", err)
		}
	}
}

func TestUpdateRateLimitTier3(t *testing.T) {
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now})
	_, ts, err := h.api.PostMessage(h.ops, slack.MsgOptionText("v0", false))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, _, _, err := h.api.UpdateMessage(h.ops, ts, slack.MsgOptionText("v", false)); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	_, _, _, err = h.api.UpdateMessage(h.ops, ts, slack.MsgOptionText("v", false))
	wantRateLimited(t, err, 2*time.Second) // 50/min: a token every 1.2s
	clk.Advance(1200 * time.Millisecond)
	if _, _, _, err := h.api.UpdateMessage(h.ops, ts, slack.MsgOptionText("v", false)); err != nil {
		t.Fatal(err)
	}
	if m, _ := h.srv.Message(h.ops, ts); m.Edits != 51 {
		t.Fatalf("edits = %d", m.Edits)
	}
}

// callAPI posts a form to a Web API method and returns the HTTP status and
// the Retry-After header.
func (h *harness) callAPI(method string, form url.Values) (int, string) {
	h.t.Helper()
	form.Set("token", h.srv.BotToken())
	resp, err := http.PostForm(h.srv.APIURL()+method, form)
	if err != nil {
		h.t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

func TestTierLimits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		method     string
		form       url.Values
		burst      int
		retryAfter string // after the burst, on a stopped clock
		refill     time.Duration
	}{
		{"tier 2", "usergroups.users.list", url.Values{"usergroup": {"S0NOTHING1"}}, 20, "3", 3 * time.Second},
		{"tier 2 list", "usergroups.list", url.Values{}, 20, "3", 3 * time.Second},
		{"tier 3", "conversations.info", url.Values{"channel": {"ops"}}, 50, "2", 1200 * time.Millisecond},
		{"tier 4", "users.info", url.Values{"user": {"U0BOTUSER01"}}, 100, "1", 600 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			h := start(t, Options{Now: clk.Now})
			for i := range tc.burst {
				if code, _ := h.callAPI(tc.method, tc.form); code != http.StatusOK {
					t.Fatalf("call %d of the burst: HTTP %d", i+1, code)
				}
			}
			code, ra := h.callAPI(tc.method, tc.form)
			if code != http.StatusTooManyRequests || ra != tc.retryAfter {
				t.Fatalf("call %d: HTTP %d Retry-After %q, want 429 %s", tc.burst+1, code, ra, tc.retryAfter)
			}
			clk.Advance(tc.refill)
			if code, _ := h.callAPI(tc.method, tc.form); code != http.StatusOK {
				t.Fatalf("after %v: HTTP %d, want one call allowed", tc.refill, code)
			}
			if code, _ := h.callAPI(tc.method, tc.form); code != http.StatusTooManyRequests {
				t.Fatalf("a second call after %v: HTTP %d, want 429", tc.refill, code)
			}
		})
	}
}

func TestConcurrentEphemeralsBeyondTier4(t *testing.T) {
	// 130 concurrent chat.postEphemeral calls: Slack answers 100 and
	// rate-limits 30 (the figure seen with a real workspace in issue 10).
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now})
	var wg sync.WaitGroup
	errs := make(chan error, 130)
	for range 130 {
		wg.Go(func() {
			_, err := h.api.PostEphemeral(h.ops, h.alice, slack.MsgOptionText("help", false))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok, limited := 0, 0
	for err := range errs {
		var rl *slack.RateLimitedError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &rl):
			limited++
		default:
			t.Fatal(err)
		}
	}
	if ok != 100 || limited != 30 || len(h.srv.Ephemerals(h.alice)) != 100 {
		t.Fatalf("%d answered, %d rate-limited, %d shown; want 100, 30, 100", ok, limited, len(h.srv.Ephemerals(h.alice)))
	}
}

func TestNonMarketplaceReadLimits(t *testing.T) {
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now, RateLimit: RateLimitOptions{NonMarketplaceApp: true}})
	_, ts, err := h.api.PostMessage(h.ops, slack.MsgOptionText("root", false))
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"channel": {h.ops}, "ts": {ts}}
	if code, _ := h.callAPI("conversations.replies", form); code != http.StatusOK {
		t.Fatalf("first read: HTTP %d", code)
	}
	if code, ra := h.callAPI("conversations.replies", form); code != http.StatusTooManyRequests || ra != "60" {
		t.Fatalf("second read within a minute: HTTP %d Retry-After %q, want 429 60", code, ra)
	}
	if code, _ := h.callAPI("conversations.history", form); code != http.StatusOK {
		t.Fatalf("history has its own bucket: HTTP %d", code)
	}
	// The other limits stay the defaults.
	if code, _ := h.callAPI("conversations.info", url.Values{"channel": {h.ops}}); code != http.StatusOK {
		t.Fatalf("conversations.info: HTTP %d", code)
	}
}

func TestCustomAndDisabledLimits(t *testing.T) {
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now, RateLimit: RateLimitOptions{Limits: map[string]Limit{
		"users.info": {Burst: 1, Every: time.Minute},
	}}})
	if _, err := h.api.GetUserInfo(h.alice); err != nil {
		t.Fatal(err)
	}
	_, err := h.api.GetUserInfo(h.alice)
	wantRateLimited(t, err, time.Minute)
	for range 10 { // not in the custom map: unlimited
		if _, _, err := h.api.PostMessage(h.ops, slack.MsgOptionText("x", false)); err != nil {
			t.Fatal(err)
		}
	}
	h.srv.SetLimit("chat.postMessage", Limit{Burst: 1, Every: time.Hour, PerChannel: true})
	if _, _, err := h.api.PostMessage(h.ops, slack.MsgOptionText("x", false)); err != nil {
		t.Fatal(err)
	}
	_, _, err = h.api.PostMessage(h.ops, slack.MsgOptionText("x", false))
	wantRateLimited(t, err, time.Hour)

	off := start(t, Options{RateLimit: RateLimitOptions{Disabled: true}})
	for range 30 {
		if _, _, err := off.api.PostMessage(off.ops, slack.MsgOptionText("x", false)); err != nil {
			t.Fatal(err)
		}
	}
	if off.srv.RateLimited() != 0 {
		t.Fatal("429s while disabled")
	}
}

func TestRateLimitedErrorIsRetryable(t *testing.T) {
	// After Retry-After has passed (on the injected clock) the call succeeds.
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now})
	h.srv.SetLimit("chat.postMessage", Limit{Burst: 1, Every: time.Second, PerChannel: true})
	if _, _, err := h.api.PostMessage(h.ops, slack.MsgOptionText("1", false)); err != nil {
		t.Fatal(err)
	}
	_, _, err := h.api.PostMessage(h.ops, slack.MsgOptionText("2", false))
	wantRateLimited(t, err, time.Second)
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || !rl.Retryable() {
		t.Fatal("RateLimitedError must be retryable")
	}
	clk.Advance(time.Second)
	if _, _, err := h.api.PostMessage(h.ops, slack.MsgOptionText("2", false)); err != nil {
		t.Fatal(err)
	}
}
