package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discordemu "github.com/runbookbot/runbookbot/bot/discord/emulator"
)

// newDiscordAlertE2E is the Discord harness with alertMappings loaded and
// an #alerts channel.
func newDiscordAlertE2E(t *testing.T) (*dE2E, string) {
	t.Helper()
	dir := t.TempDir()
	mf := filepath.Join(dir, "mappings.yaml")
	if err := os.WriteFile(mf, []byte(alertMappings), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newDiscordE2E(t, false, mf)
	return h, h.emu.AddChannel("alerts")
}

// discordAlertmanager starts the Debian package's Alertmanager with a
// discord_configs receiver posting to webhookURL; alerts labelled
// via=webhook go to the bot's receiver (webhook_configs) instead.
func discordAlertmanager(t *testing.T, webhookURL, botWebhook string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		if bin, err = exec.LookPath("alertmanager"); err != nil {
			if os.Getenv("RUNBOOKBOT_REQUIRE_ALERTMANAGER") != "" {
				t.Fatal("prometheus-alertmanager not installed (apt-get install prometheus-alertmanager)")
			}
			t.Skip("prometheus-alertmanager not installed")
		}
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: discord
  group_by: [alertname, service]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: [via="webhook"]
      receiver: bot
receivers:
  - name: discord
    discord_configs:
      - webhook_url: %q
        send_resolved: true
  - name: bot
    webhook_configs:
      - url: %q
        send_resolved: true
`, webhookURL, botWebhook)
	cfgPath := filepath.Join(dir, "am.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
		"--cluster.listen-address=", "--log.level=warn")
	var logs bytes.Buffer
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
	url := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond) // another process starting up
	}
}

// An alert posted to a real Alertmanager reaches #alerts through its
// discord_configs (an embed, read thanks to MESSAGE_CONTENT); the bot runs
// the mapped runbook in the alert message's thread; the resolution lands
// in the same thread.
func TestDiscordAlertmanagerDiscordConfigsToThread(t *testing.T) {
	h, alertsCh := newDiscordAlertE2E(t)
	hook, err := h.emu.AddWebhook("alerts", "Alertmanager")
	if err != nil {
		t.Fatal(err)
	}
	am := discordAlertmanager(t, hook.URL, "http://127.0.0.1:9/unused")
	labels := map[string]string{"alertname": "CheckoutDown", "service": "checkout", "environment": "staging"}
	postAlert(t, am, labels, false)
	alert := h.message(alertsCh, "the alert from Alertmanager", func(m discordemu.Message) bool {
		return m.WebhookID == hook.ID && strings.Contains(dtext(m), "[FIRING:1] CheckoutDown")
	})
	h.message(alert.ID, "the execution's parent in the alert's thread", dcontains("example-echo v1.0.0", "service=checkout"))
	if th, ok := h.emu.Channel(alert.ID); !ok || th.ParentID != alertsCh {
		t.Fatalf("the alert has no thread: %+v", th)
	}
	h.message(alert.ID, "the settle step in the alert thread", dcontains("**settle**", "running"))
	h.advance(2, 2*time.Second) // the sleep and the step timeout
	h.message(alert.ID, "success in the alert thread", dcontains("**Succeeded**"))
	postAlert(t, am, labels, true)
	h.message(alertsCh, "Alertmanager's resolved message", func(m discordemu.Message) bool {
		return m.WebhookID == hook.ID && strings.Contains(dtext(m), "[RESOLVED] CheckoutDown")
	})
	h.message(alert.ID, "the resolution in the same thread", dcontains("Resolved:"))
	rows, _ := h.rb.store.History(context.Background(), historyAll)
	if len(rows) != 1 || rows[0].Trigger.Type != "alert" || rows[0].Trigger.Platform != "discord" ||
		rows[0].Trigger.Labels["service"] != "checkout" || rows[0].Trigger.AlertID == "" {
		t.Errorf("executions = %+v", rows)
	}
	if n := len(h.emu.Threads(alertsCh)); n != 1 {
		t.Errorf("%d threads in #alerts, want 1", n)
	}
}

// With the Alertmanager receiver set to open threads on Discord, a
// webhook_configs notification gets a thread in #alerts from the bot.
func TestDiscordAlertmanagerWebhookReceiverToThread(t *testing.T) {
	h, alertsCh := newDiscordAlertE2E(t)
	h.stop()
	h.opts.listen, h.opts.alertChannel, h.opts.discord.alertPlatform = "127.0.0.1:0", "#alerts", "discord"
	h.start()
	hook, err := h.emu.AddWebhook("alerts", "Alertmanager")
	if err != nil {
		t.Fatal(err)
	}
	am := discordAlertmanager(t, hook.URL, "http://"+h.rb.addr+"/alertmanager")
	labels := map[string]string{"alertname": "CheckoutDown", "service": "cart", "environment": "staging", "via": "webhook"}
	postAlert(t, am, labels, false)
	root := h.message(alertsCh, "the bot's alert message", func(m discordemu.Message) bool {
		return m.Author == h.emu.BotUserID() && strings.Contains(dtext(m), "FIRING:") && strings.Contains(dtext(m), "CheckoutDown")
	})
	h.message(root.ID, "the execution in its thread", dcontains("example-echo v1.0.0"))
	h.advance(2, 2*time.Second)
	h.message(root.ID, "success", dcontains("**Succeeded**"))
	postAlert(t, am, labels, true)
	h.message(root.ID, "resolved in the same thread", dcontains("Resolved:"))
}
