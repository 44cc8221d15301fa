package discord

import (
	"net/http"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

func subData(name string, opts ...*discordgo.ApplicationCommandInteractionDataOption) discordgo.ApplicationCommandInteractionData {
	return discordgo.ApplicationCommandInteractionData{Name: CommandName, Options: []*discordgo.ApplicationCommandInteractionDataOption{
		{Type: discordgo.ApplicationCommandOptionSubCommand, Name: name, Options: opts}}}
}

func str(name, v string) *discordgo.ApplicationCommandInteractionDataOption {
	return &discordgo.ApplicationCommandInteractionDataOption{Type: discordgo.ApplicationCommandOptionString, Name: name, Value: v}
}

// Each sub-command becomes the command line a Slack user would type.
func TestCommandLine(t *testing.T) {
	tests := []struct {
		name string
		data discordgo.ApplicationCommandInteractionData
		want string
	}{
		{"run", subData("run", str("name", "example-echo"), str("params", `service=checkout message="two words"`)),
			`run example-echo service=checkout message="two words"`},
		{"run without params", subData("run", str("name", "example-echo")), "run example-echo"},
		{"dry-run", subData("dry-run", str("name", "example-echo"), str("params", "environment=production")), "dry-run example-echo environment=production"},
		{"list", subData("list"), "list"},
		{"status of all", subData("status"), "status"},
		{"status of one", subData("status", str("id", "7b58c9bc")), "status 7b58c9bc"},
		{"reject with a reason", subData("reject", str("id", "x.1"), str("reason", "not during peak")), "reject x.1 not during peak"},
		{"history with flags", subData("history", str("runbook", "example-echo"), str("outcome", "success"), str("since", "24h"),
			&discordgo.ApplicationCommandInteractionDataOption{Type: discordgo.ApplicationCommandOptionInteger, Name: "limit", Value: float64(5)}),
			"history example-echo --outcome success --since 24h --limit 5"},
		{"schedules", subData("schedules"), "schedules"},
		{"pause a schedule", subData("schedules", str("action", "pause"), str("name", "nightly-report")), "schedules pause nightly-report"},
		{"no sub-command", discordgo.ApplicationCommandInteractionData{Name: CommandName}, "help"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CommandLine(tt.data); got != tt.want {
				t.Errorf("CommandLine = %q, want %q", got, tt.want)
			}
		})
	}
}

// Autocomplete offers matching runbooks, and completes parameters not
// given yet.
func TestSuggest(t *testing.T) {
	hints := []RunbookHint{{Name: "example-echo", Description: "demo", Params: []string{"service", "environment", "failRestart"}},
		{Name: "disk-cleanup", Params: []string{"node"}}}
	focused := func(name, v string) *discordgo.ApplicationCommandInteractionDataOption {
		o := str(name, v)
		o.Focused = true
		return o
	}
	names := suggest(subData("run", focused("name", "echo")), hints)
	if len(names) != 1 || names[0].Value != "example-echo" || names[0].Name != "example-echo — demo" {
		t.Errorf("names = %+v", names)
	}
	params := suggest(subData("run", str("name", "example-echo"), focused("params", "service=checkout env")), hints)
	if len(params) != 1 || params[0].Value != "service=checkout environment=" {
		t.Errorf("params = %+v", params)
	}
	all := suggest(subData("run", str("name", "example-echo"), focused("params", "")), hints)
	if len(all) != 3 {
		t.Errorf("params for an empty field = %+v", all)
	}
}

// Buckets are keyed like Discord's: per route and major parameter.
func TestRouteKey(t *testing.T) {
	tests := []struct{ method, path, want string }{
		{"POST", "/api/v9/channels/111111/messages", "POST channels/111111/messages"},
		{"PATCH", "/api/v9/channels/111111/messages/222222", "PATCH channels/111111/messages/:id"},
		{"POST", "/api/v10/channels/111111/messages/222222/threads", "POST channels/111111/messages/:id/threads"},
		{"POST", "/api/v9/webhooks/333333/tok/messages/@original", "POST webhooks/333333/tok/messages/@original"},
		{"PUT", "/api/v9/channels/111111/messages/222222/reactions/%E2%9C%85/@me", "PUT channels/111111/messages/:id/reactions/:emoji/@me"},
	}
	for _, tt := range tests {
		if got := routeKey(tt.method, tt.path); got != tt.want {
			t.Errorf("routeKey(%s %s) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

// A bucket the headers said is empty refuses calls until its reset; a
// global 429 refuses every call.
func TestLimitsLearnFromHeaders(t *testing.T) {
	now := time.Unix(1700000000, 0)
	l := newLimits()
	l.now = func() time.Time { return now }
	route := "POST channels/1/messages"
	h := http.Header{}
	h.Set("X-RateLimit-Remaining", "1")
	h.Set("X-RateLimit-Reset-After", "4.5")
	l.observe(route, 200, h)
	if d := l.wait(route); d != 0 {
		t.Fatalf("wait with one call left = %v", d)
	}
	l.take(route) // sent, no answer yet
	if d := l.wait(route); d != 4500*time.Millisecond {
		t.Errorf("wait on an empty bucket = %v, want 4.5s", d)
	}
	if d := l.wait("POST channels/2/messages"); d != 0 {
		t.Errorf("another channel's bucket waits %v", d)
	}
	now = now.Add(5 * time.Second)
	if d := l.wait(route); d != 0 {
		t.Errorf("wait after the reset = %v", d)
	}
	g := http.Header{}
	g.Set("X-RateLimit-Global", "true")
	g.Set("Retry-After", "2")
	l.observe("GET channels/3", http.StatusTooManyRequests, g)
	if d := l.wait("POST channels/9/messages"); d != 2*time.Second {
		t.Errorf("wait after a global 429 = %v, want 2s", d)
	}
	if calls, hits := l.calls.Load(), l.hits.Load(); calls != 1 || hits != 1 {
		t.Errorf("calls %d, 429s %d", calls, hits)
	}
}
