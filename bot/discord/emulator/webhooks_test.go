package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

func TestWebhookAlertLandsAsMessageCreate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		intents    discordgo.Intent
		wantEmbeds bool
	}{
		{"with MESSAGE_CONTENT", botIntents, true},
		{"without MESSAGE_CONTENT", discordgo.IntentsAllWithoutPrivileged, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, Options{})
			alerts := h.srv.AddChannel("alerts")
			hook, err := h.srv.AddWebhook("alerts", "Alertmanager")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(hook.URL, h.srv.URL()+"api/webhooks/") {
				t.Fatalf("webhook URL %q", hook.URL)
			}
			h.connect(tc.intents)
			body := AlertmanagerPayload("HighCPU", map[string]string{"service": "web"}, map[string]string{"summary": "CPU > 90%"}, true)
			if status, err := h.srv.ExecuteWebhook(hook.URL, body); err != nil || status != 204 {
				t.Fatalf("execute = %d, %v", status, err)
			}
			m := next[*discordgo.MessageCreate](h)
			if m.WebhookID != hook.ID || m.Author == nil || m.Author.ID != hook.ID || !m.Author.Bot || m.Author.Username != "Alertmanager" ||
				m.Member != nil || m.ChannelID != alerts || m.GuildID != h.srv.GuildID() {
				t.Fatalf("MESSAGE_CREATE = %+v author %+v", m.Message, m.Author)
			}
			if !tc.wantEmbeds {
				if len(m.Embeds) != 0 {
					t.Fatalf("embeds delivered without MESSAGE_CONTENT: %+v", m.Embeds)
				}
				return
			}
			if len(m.Embeds) != 1 || m.Embeds[0].Title != "[FIRING:1] HighCPU (web)" || m.Embeds[0].Color != 0x992D22 ||
				!strings.Contains(m.Embeds[0].Description, "service = web") {
				t.Fatalf("embeds = %+v", m.Embeds)
			}
		})
	}
}

func TestWebhookExecuteVariants(t *testing.T) {
	h := start(t, Options{})
	th, _ := h.dg.ChannelMessageSend(h.ops, "incident")
	thread, err := h.dg.MessageThreadStartComplex(h.ops, th.ID, &discordgo.ThreadStart{Name: "incident"})
	if err != nil {
		t.Fatal(err)
	}
	hook, _ := h.srv.AddWebhook("ops", "Alertmanager")
	// discordgo's WebhookExecute with wait=true returns the message.
	m, err := h.dg.WebhookExecute(hook.ID, hook.Token, true, &discordgo.WebhookParams{Content: "resolved", Username: "AM"})
	if err != nil || m.WebhookID != hook.ID || m.Author.Username != "AM" {
		t.Fatalf("WebhookExecute = %+v, %v", m, err)
	}
	if _, err := h.dg.WebhookThreadExecute(hook.ID, hook.Token, false, thread.ID, &discordgo.WebhookParams{Content: "in the thread"}); err != nil {
		t.Fatal(err)
	}
	if msgs := h.srv.Messages(thread.ID); len(msgs) != 1 || msgs[0].Content != "in the thread" {
		t.Fatalf("thread = %+v", msgs)
	}
	_, err = h.dg.WebhookExecute(hook.ID, "wrong-token", true, &discordgo.WebhookParams{Content: "x"})
	restErr(t, err, 401, 50027)
	_, err = h.dg.WebhookExecute(hook.ID, hook.Token, true, &discordgo.WebhookParams{})
	restErr(t, err, 400, 50006)
	_, err = h.dg.WebhookExecute(hook.ID, hook.Token, true, &discordgo.WebhookParams{Content: "x", Username: "discord bot"})
	restErr(t, err, 400, 50035)
	// The webhook can edit what it sent.
	if _, err := h.dg.WebhookMessageEdit(hook.ID, hook.Token, m.ID, &discordgo.WebhookEdit{Content: strptr("resolved (edited)")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.srv.Message(m.ID); got.Content != "resolved (edited)" || got.Edits != 1 {
		t.Fatalf("edited = %+v", got)
	}
	if h.srv.Calls("POST /webhooks/{webhook_id}/{webhook_token}") != 5 {
		t.Fatalf("calls = %v", h.srv.CallCounts())
	}
}

// TestRealAlertmanagerDiscordConfigs runs the Debian package's
// Alertmanager 0.25 with a discord_configs receiver pointed at the
// emulator's webhook: the alert lands as a webhook message with embeds.
func TestRealAlertmanagerDiscordConfigs(t *testing.T) {
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		if bin, err = exec.LookPath("alertmanager"); err != nil {
			t.Skip("prometheus-alertmanager not installed")
		}
	}
	h := start(t, Options{})
	h.srv.AddChannel("alerts")
	hook, _ := h.srv.AddWebhook("alerts", "Alertmanager")
	h.connect(botIntents)

	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: discord
  group_by: [alertname]
  group_wait: 50ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: discord
    discord_configs:
      - webhook_url: %q
        send_resolved: true
`, hook.URL)
	if err := os.WriteFile(filepath.Join(dir, "am.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "am.yml"), "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager log:\n%s", logs.String())
		}
	})
	am := "http://" + addr
	poll(t, "alertmanager to be ready", func() bool {
		resp, err := http.Get(am + "/-/ready")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	})
	alert, _ := json.Marshal([]any{map[string]any{
		"labels":      map[string]string{"alertname": "HighCPU", "service": "checkout"},
		"annotations": map[string]string{"summary": "CPU above 90%"},
		"startsAt":    time.Now().Add(-time.Minute).Format(time.RFC3339),
	}})
	resp, err := http.Post(am+"/api/v2/alerts", "application/json", bytes.NewReader(alert))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("alertmanager refused the alert: %s", resp.Status)
	}
	m := next[*discordgo.MessageCreate](h)
	if m.WebhookID != hook.ID || len(m.Embeds) != 1 || !strings.HasPrefix(m.Embeds[0].Title, "[FIRING:1] HighCPU") ||
		m.Embeds[0].Color != 0x992D22 || !strings.Contains(m.Embeds[0].Description, "checkout") {
		t.Fatalf("alert message = %+v embeds %+v", m.Message, m.Embeds)
	}
}
