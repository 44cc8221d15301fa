package emulator

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
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
	for i := range 20 {
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
	if m, _ := h.srv.Message(h.ops, ts); m.Edits != 21 {
		t.Fatalf("edits = %d", m.Edits)
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
