package bot

import (
	"context"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
)

// A notification of no execution (serve's drift report) to a #channel or
// a channel id is posted there on the default platform; one naming only
// "chat" has no thread to go to and says so.
func TestNotifyWithoutAnExecutionPostsToItsChannels(t *testing.T) {
	h := newHarness(t)
	err := h.bot.Notify(context.Background(), engine.Notification{Channels: []string{"#ops", "C0DRIFT1", "pagerduty"}, Severity: "warning",
		Message: "Runbook drift: 1 finding(s) now."})
	if err != nil {
		t.Fatalf("Notify = %v", err)
	}
	for _, conv := range []string{"#ops", "C0DRIFT1"} {
		waitFor(t, "the drift report in "+conv, func() bool {
			ps := h.p.posts(conv, "")
			return len(ps) == 1 && strings.Contains(ps[0], "warning [info] Runbook drift: 1 finding(s) now.")
		})
	}
	if err := h.bot.Notify(context.Background(), engine.Notification{Channels: []string{"chat"}, Message: "x"}); err == nil || !strings.Contains(err.Error(), "#channel") {
		t.Errorf("Notify to chat without an execution = %v, want an error asking for a #channel", err)
	}
}
