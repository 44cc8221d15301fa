package emulator

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

func post(t *testing.T, srv *Server, path, auth, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL()+path, strings.NewReader(body))
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func TestBucketHeadersAnd429(t *testing.T) {
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now})
	auth := "Bot " + h.srv.Token()
	path := "api/v10/channels/" + h.ops + "/messages"
	var bucket string
	for i := range 5 {
		resp := post(t, h.srv, path, auth, `{"content":"x"}`)
		hd := resp.Header
		if resp.StatusCode != 200 || hd.Get("X-RateLimit-Limit") != "5" || hd.Get("X-RateLimit-Remaining") != string(rune('4'-i)) ||
			hd.Get("X-RateLimit-Reset-After") != "5.000" || hd.Get("X-RateLimit-Bucket") == "" || hd.Get("X-RateLimit-Reset") != "1700000005.000" {
			t.Fatalf("call %d: %d %v", i, resp.StatusCode, hd)
		}
		bucket = hd.Get("X-RateLimit-Bucket")
	}
	clk.Advance(1500 * time.Millisecond)
	resp := post(t, h.srv, path, auth, `{"content":"x"}`)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "4" || resp.Header.Get("X-RateLimit-Remaining") != "0" ||
		resp.Header.Get("X-RateLimit-Scope") != "user" || resp.Header.Get("X-RateLimit-Bucket") != bucket ||
		string(body) != `{"global":false,"message":"You are being rate limited.","retry_after":3.5}` {
		t.Fatalf("429: %v %s", resp.Header, body)
	}
	if h.srv.RateLimited() != 1 || len(h.srv.Messages("ops")) != 5 {
		t.Fatalf("RateLimited %d, messages %d", h.srv.RateLimited(), len(h.srv.Messages("ops")))
	}
	// Buckets are per channel.
	other := h.srv.AddChannel("other")
	if resp := post(t, h.srv, "api/v10/channels/"+other+"/messages", auth, `{"content":"x"}`); resp.StatusCode != 200 {
		t.Fatalf("other channel: %d", resp.StatusCode)
	}
	clk.Advance(3500 * time.Millisecond)
	if resp := post(t, h.srv, path, auth, `{"content":"x"}`); resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "4" {
		t.Fatalf("after reset: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestGlobalLimit(t *testing.T) {
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now, RateLimit: RateLimitOptions{Global: Limit{Requests: 3, Window: time.Second}}})
	auth := "Bot " + h.srv.Token()
	for i := range 3 {
		if resp := post(t, h.srv, "api/v10/channels/"+h.ops+"/typing", auth, ""); resp.StatusCode != 204 {
			t.Fatalf("call %d: %d", i, resp.StatusCode)
		}
	}
	resp := post(t, h.srv, "api/v10/channels/"+h.ops+"/typing", auth, "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || resp.Header.Get("X-RateLimit-Global") != "true" || resp.Header.Get("X-RateLimit-Scope") != "global" ||
		!strings.Contains(string(body), `"global":true`) {
		t.Fatalf("global 429: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// Webhooks with a token are not bound to the global limit.
	hook, err := h.srv.AddWebhook("ops", "Alertmanager")
	if err != nil {
		t.Fatal(err)
	}
	if resp := post(t, h.srv, "api/webhooks/"+hook.ID+"/"+hook.Token, "", `{"content":"alert"}`); resp.StatusCode != 204 {
		t.Fatalf("webhook under global limit: %d", resp.StatusCode)
	}
	if h.srv.GlobalRateLimited() != 1 || h.srv.RateLimited() != 1 {
		t.Fatalf("global %d total %d", h.srv.GlobalRateLimited(), h.srv.RateLimited())
	}
	clk.Advance(time.Second)
	if resp := post(t, h.srv, "api/v10/channels/"+h.ops+"/typing", auth, ""); resp.StatusCode != 204 {
		t.Fatalf("after the window: %d", resp.StatusCode)
	}
}

// Two bot replicas share the channel's edit bucket on Discord but each
// discordgo session only knows its own: the second replica's edit meets a
// 429, and discordgo waits out retry_after and retries.
func TestDiscordgoWaitsOut429(t *testing.T) {
	h := start(t, Options{})
	const edit = "PATCH /channels/{channel_id}/messages/{message_id}"
	h.srv.SetLimit(edit, Limit{Requests: 1, Window: 300 * time.Millisecond})
	replica := h.session("Bot " + h.srv.Token())
	var mu sync.Mutex
	var seen []*discordgo.RateLimit
	replica.AddHandler(func(_ *discordgo.Session, rl *discordgo.RateLimit) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, rl)
	})
	a, _ := h.dg.ChannelMessageSend(h.ops, "step 1: pending")
	b, _ := h.dg.ChannelMessageSend(h.ops, "step 2: pending")
	if _, err := h.dg.ChannelMessageEdit(h.ops, a.ID, "step 1: ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.ChannelMessageEdit(h.ops, b.ID, "step 2: running"); err != nil {
		t.Fatalf("edit after 429: %v", err)
	}
	if h.srv.RateLimited() != 1 || h.srv.Calls(edit) != 3 {
		t.Fatalf("RateLimited %d, PATCH calls %d", h.srv.RateLimited(), h.srv.Calls(edit))
	}
	if got, _ := h.srv.Message(b.ID); got.Content != "step 2: running" || got.Edits != 1 {
		t.Fatalf("message b = %+v", got)
	}
	poll(t, "discordgo's RateLimit event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 1 && seen[0].RetryAfter > 0 && seen[0].RetryAfter <= 300*time.Millisecond
	})

	// Without retries discordgo hands the 429 to the caller.
	replica.ShouldRetryOnRateLimit = false
	if _, err := h.dg.ChannelMessageEdit(h.ops, a.ID, "step 1: ok (again)"); err != nil {
		t.Fatal(err)
	}
	_, err := replica.ChannelMessageEdit(h.ops, b.ID, "step 2: ok")
	var rle *discordgo.RateLimitError
	if !errors.As(err, &rle) || rle.RetryAfter <= 0 {
		t.Fatalf("want *discordgo.RateLimitError, got %T %v", err, err)
	}
}

// discordgo learns of the global limit only from a 429; it waits and
// retries.
func TestDiscordgoWaitsOutGlobal429(t *testing.T) {
	h := start(t, Options{RateLimit: RateLimitOptions{Global: Limit{Requests: 2, Window: 300 * time.Millisecond}}})
	for i := range 3 {
		if _, err := h.dg.ChannelMessageSend(h.ops, "burst"); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if _, err := h.dg.User("@me"); err != nil {
		t.Fatal(err)
	}
	if h.srv.GlobalRateLimited() < 1 || len(h.srv.Messages("ops")) != 3 {
		t.Fatalf("global 429s %d, messages %d", h.srv.GlobalRateLimited(), len(h.srv.Messages("ops")))
	}
}

// With X-RateLimit-Remaining: 0 discordgo waits before the next call on
// the same URL, so it never meets the 429.
func TestDiscordgoHonoursRemainingZero(t *testing.T) {
	h := start(t, Options{})
	h.srv.SetLimit("POST /channels/{channel_id}/messages", Limit{Requests: 2, Window: 200 * time.Millisecond})
	for i := range 5 {
		if _, err := h.dg.ChannelMessageSend(h.ops, "burst"); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if h.srv.RateLimited() != 0 || len(h.srv.Messages("ops")) != 5 {
		t.Fatalf("RateLimited %d, messages %d", h.srv.RateLimited(), len(h.srv.Messages("ops")))
	}
}

func TestRateLimitingSwitch(t *testing.T) {
	clk := newFakeClock()
	h := start(t, Options{Now: clk.Now})
	h.srv.SetRateLimiting(false)
	for i := range 20 {
		resp := post(t, h.srv, "api/v10/channels/"+h.ops+"/messages", "Bot "+h.srv.Token(), `{"content":"x"}`)
		if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "" {
			t.Fatalf("call %d while disabled: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	h.srv.SetRateLimiting(true)
	for range 5 {
		post(t, h.srv, "api/v10/channels/"+h.ops+"/messages", "Bot "+h.srv.Token(), `{"content":"x"}`)
	}
	if resp := post(t, h.srv, "api/v10/channels/"+h.ops+"/messages", "Bot "+h.srv.Token(), `{"content":"x"}`); resp.StatusCode != 429 {
		t.Fatalf("after re-enabling: %d", resp.StatusCode)
	}
}
