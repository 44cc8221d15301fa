package main

import (
	"bytes"
	"context"
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

	"github.com/runbookbot/runbookbot/bot"
	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/engine"
)

// alertMappings maps CheckoutDown to example-echo (which needs no cluster).
const alertMappings = `mappings:
  - alert: CheckoutDown
    runbook: example-echo
    autoTrigger: true
    conditions:
      - environment: "!production"
    parameters:
      service: "{{ $labels.service }}"
      environment: "{{ $labels.environment }}"
  - alert: CheckoutSlow
    runbook: example-echo
    autoTrigger: false
    parameters:
      service: "{{ $labels.service }}"
defaults:
  autoTrigger: false
  notifyChannel: "#alerts"
  suggestRunbook: true
`

func newAlertE2E(t *testing.T) (*e2e, string) {
	t.Helper()
	dir := t.TempDir()
	mf := filepath.Join(dir, "mappings.yaml")
	if err := os.WriteFile(mf, []byte(alertMappings), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newE2E(t, false, mf)
	alertsCh := h.emu.AddChannel("alerts")
	h.stop()
	h.opts.listen = "127.0.0.1:0"
	h.start()
	return h, alertsCh
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// alertmanager starts the Debian package's Alertmanager routing every alert
// to the emulator's incoming webhook (slack_configs) and to the bot's
// receiver (webhook_configs).
func alertmanager(t *testing.T, slackWebhook, botWebhook string) string {
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
  receiver: slack
  group_by: [alertname, service]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: [via="webhook"]
      receiver: bot
receivers:
  - name: slack
    slack_configs:
      - api_url: %q
        channel: "#alerts"
        send_resolved: true
        text: '{{ range .Alerts }}*Alert:* {{ .Labels.alertname }}{{ "\n" }}{{ range .Labels.SortedPairs }} • *{{ .Name }}:* `+"`{{ .Value }}`"+`{{ "\n" }}{{ end }}{{ end }}'
  - name: bot
    webhook_configs:
      - url: %q
        send_resolved: true
`, slackWebhook, botWebhook)
	cfgPath := filepath.Join(dir, "am.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
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

func postAlert(t *testing.T, am string, labels map[string]string, resolved bool) {
	t.Helper()
	a := map[string]any{"labels": labels, "annotations": map[string]string{"summary": "checkout is down"}, "startsAt": time.Now().Add(-time.Minute).Format(time.RFC3339)}
	if resolved {
		a["endsAt"] = time.Now().Add(-time.Second).Format(time.RFC3339)
	}
	body, _ := json.Marshal([]any{a})
	resp, err := http.Post(am+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("alertmanager refused the alert: %s", resp.Status)
	}
}

// An alert posted to a real Alertmanager reaches the channel through its
// slack_configs; the bot runs the mapped runbook in the alert's thread; the
// resolution lands in the same thread.
func TestAlertmanagerSlackConfigsToThread(t *testing.T) {
	h, alertsCh := newAlertE2E(t)
	am := alertmanager(t, h.emu.AddWebhook("", "alerts"), "http://"+h.rb.addr+"/alertmanager")
	labels := map[string]string{"alertname": "CheckoutDown", "service": "checkout", "environment": "staging"}
	postAlert(t, am, labels, false)
	alert := h.message(alertsCh, "the alert from Alertmanager", func(m slackemu.Message) bool {
		return m.SubType == "bot_message" && strings.Contains(body(m), "FIRING") && m.ThreadTS == ""
	})
	h.message(alertsCh, "the execution's parent in the alert thread", func(m slackemu.Message) bool {
		return m.ThreadTS == alert.TS && strings.Contains(body(m), "example-echo v1.0.0")
	})
	h.message(alertsCh, "the settle step in the alert thread", contains("*settle*", "running"))
	h.advance(2, 2*time.Second) // the sleep and the step timeout
	h.message(alertsCh, "success in the alert thread", func(m slackemu.Message) bool {
		return m.ThreadTS == alert.TS && strings.Contains(body(m), "*Succeeded*")
	})
	postAlert(t, am, labels, true)
	h.message(alertsCh, "the resolution in the same thread", func(m slackemu.Message) bool {
		return m.ThreadTS == alert.TS && strings.Contains(body(m), "Resolved:")
	})
	evs, _ := h.rb.store.History(context.Background(), historyAll)
	if len(evs) != 1 || evs[0].Trigger.Type != "alert" || evs[0].Trigger.Labels["service"] != "checkout" || evs[0].Trigger.AlertID == "" {
		t.Errorf("executions = %+v", evs)
	}
}

// The same through webhook_configs to the bot's receiver: the bot opens the
// thread in #alerts itself.
func TestAlertmanagerWebhookToThread(t *testing.T) {
	h, alertsCh := newAlertE2E(t)
	am := alertmanager(t, h.emu.AddWebhook("", "alerts"), "http://"+h.rb.addr+"/alertmanager")
	labels := map[string]string{"alertname": "CheckoutDown", "service": "cart", "environment": "staging", "via": "webhook"}
	postAlert(t, am, labels, false)
	root := h.message(alertsCh, "the bot's alert thread", func(m slackemu.Message) bool {
		return m.ThreadTS == "" && strings.Contains(body(m), "FIRING:") && strings.Contains(body(m), "CheckoutDown")
	})
	h.message(alertsCh, "the execution in that thread", func(m slackemu.Message) bool {
		return m.ThreadTS == root.TS && strings.Contains(body(m), "example-echo v1.0.0")
	})
	h.advance(2, 2*time.Second) // the sleep and the step timeout
	h.message(alertsCh, "success", func(m slackemu.Message) bool {
		return m.ThreadTS == root.TS && strings.Contains(body(m), "*Succeeded*")
	})
	postAlert(t, am, labels, true)
	h.message(alertsCh, "resolved in the same thread", func(m slackemu.Message) bool {
		return m.ThreadTS == root.TS && strings.Contains(body(m), "Resolved:")
	})
	// The execution is counted in the bot's own metrics.
	resp, err := http.Get("http://" + h.rb.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var mb bytes.Buffer
	_, _ = mb.ReadFrom(resp.Body)
	if want := `runbook_executions_total{outcome="success",runbook_name="example-echo",trigger_type="alert"} 1`; !strings.Contains(mb.String(), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// Without autoTrigger the bot offers a Run button; production is refused
// by the mapping's condition; unmapped alerts get suggestions.
func TestAlertOffersAndRefusals(t *testing.T) {
	h, alertsCh := newAlertE2E(t)
	hook := h.emu.AddWebhook("", "alerts")
	payload := func(name, service, env string) []byte {
		text := fmt.Sprintf("*Alert:* %s\n • *alertname:* `%s`\n • *environment:* `%s`\n • *service:* `%s`\n", name, name, env, service)
		b, _ := json.Marshal(map[string]any{"username": "AlertManager", "attachments": []any{map[string]any{"title": "[FIRING:1] " + name, "text": text, "color": "danger"}}})
		return b
	}
	path := hook[strings.Index(hook, "/services/"):]
	if err := h.emu.PostWebhook(path, payload("CheckoutSlow", "checkout", "staging")); err != nil {
		t.Fatal(err)
	}
	offer := h.message(alertsCh, "the Run offer", contains("maps to `example-echo`", "alert:run"))
	h.click("bob", offer, "alert:run")
	h.message(alertsCh, "the execution started from the offer", func(m slackemu.Message) bool {
		return m.ThreadTS == offer.ThreadTS && strings.Contains(body(m), "example-echo v1.0.0")
	})
	if err := h.emu.PostWebhook(path, payload("CheckoutDown", "checkout", "production")); err != nil {
		t.Fatal(err)
	}
	h.message(alertsCh, "the refusal", contains("Not running `example-echo`", "production"))
	if err := h.emu.PostWebhook(path, payload("EchoServiceFlapping", "echo", "staging")); err != nil {
		t.Fatal(err)
	}
	h.message(alertsCh, "a suggestion", contains("No runbook is mapped to *EchoServiceFlapping*", "example-echo"))
}

var historyAll = engine.HistoryQuery{}

// webhookGroup is an Alertmanager webhook notification for alerts.
func webhookGroup(alerts ...map[string]string) []byte {
	var as []any
	for _, l := range alerts {
		as = append(as, map[string]any{"status": "firing", "labels": l, "annotations": map[string]string{}, "startsAt": "2026-11-27T10:00:00Z"})
	}
	b, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "bot", "groupLabels": map[string]string{}, "alerts": as})
	return b
}

// 1,000 alerts for 50 fingerprints start 50 executions, at most 3 at a
// time (the rest wait in one grouped queue message), without a single 429.
func TestAlertStormDedup(t *testing.T) {
	h, alertsCh := newAlertE2E(t)
	h.emu.SetLimit("chat.postMessage", slackemu.Limit{Burst: 5, Every: 100 * time.Millisecond, PerChannel: true})
	h.emu.SetLimit("chat.update", slackemu.Limit{Burst: 20, Every: 120 * time.Millisecond})
	h.stop()
	h.opts.limits = bot.Limits{PostBurst: 3, PostEvery: 110 * time.Millisecond, UpdateBurst: 10, UpdateEvery: 130 * time.Millisecond}
	h.start()
	url := "http://" + h.rb.addr + "/alertmanager"
	for batch := 0; batch < 100; batch++ {
		var group []map[string]string
		for i := 0; i < 10; i++ {
			n := (batch*10 + i) % 50
			group = append(group, map[string]string{"alertname": "CheckoutDown", "service": fmt.Sprintf("svc-%02d", n), "environment": "staging"})
		}
		resp, err := http.Post(url, "application/json", bytes.NewReader(webhookGroup(group...)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("receiver answered %s", resp.Status)
		}
	}
	count := func() int {
		rows, _ := h.rb.store.History(context.Background(), engine.HistoryQuery{Limit: 1000})
		return len(rows)
	}
	h.waitFor("the first executions", func() bool { return count() >= 3 })
	// Every notification is handled before time moves, so what the alerts
	// do is decided by dedup, not by cool-downs running out on the clock.
	h.waitFor("all notifications handled", func() bool { return h.rb.bot.AlertBacklog() == 0 })
	h.message(alertsCh, "one grouped queue message", contains("alert(s) queued", "example-echo"))
	// Let executions finish (their settle step waits 2s on the clock) until
	// all 50 have run.
	deadline := time.Now().Add(60 * time.Second)
	for {
		rows, _ := h.rb.store.History(context.Background(), engine.HistoryQuery{Limit: 1000})
		finished := 0
		for _, r := range rows {
			if r.Status == engine.StatusFinished {
				finished++
			}
		}
		if finished == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 50 executions finished (%d started)", finished, len(rows))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		if h.clock.WaitTimers(ctx, 1) == nil {
			h.clock.Advance(2 * time.Second)
		}
		cancel()
	}
	rows, _ := h.rb.store.History(context.Background(), engine.HistoryQuery{Limit: 1000})
	services := map[string]int{}
	fps := map[string]string{}
	for _, r := range rows {
		services[fmt.Sprint(r.Parameters["service"])]++
		if prev, ok := fps[r.Trigger.AlertID]; ok {
			t.Logf("fingerprint %s ran twice: %s and %s (%v)", r.Trigger.AlertID, prev, r.ExecutionID, r.Trigger.Labels)
		}
		fps[r.Trigger.AlertID] = r.ExecutionID
	}
	if len(rows) != 50 || len(services) != 50 {
		t.Errorf("%d executions for %d services, want 50 and 50: %v", len(rows), len(services), services)
	}
	if err := h.rb.bot.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := h.emu.RateLimited(); n != 0 {
		t.Errorf("%d calls got 429", n)
	}
	queueMsgs := 0
	for _, m := range h.emu.AllMessages(alertsCh) {
		if strings.Contains(body(m), "queued") && m.ThreadTS == "" {
			queueMsgs++
		}
	}
	if queueMsgs != 1 {
		t.Errorf("%d queue messages, want 1 (grouped)", queueMsgs)
	}
}

// Alert bookkeeping survives a restart: a repeat of the alert does not
// start a second execution, and its resolution lands in the same thread.
func TestAlertStateSurvivesRestart(t *testing.T) {
	h, alertsCh := newAlertE2E(t)
	url := func() string { return "http://" + h.rb.addr + "/alertmanager" }
	labels := map[string]string{"alertname": "CheckoutDown", "service": "cart", "environment": "staging"}
	post := func(status string) {
		t.Helper()
		g := webhookGroup(labels)
		if status == "resolved" {
			g = []byte(strings.ReplaceAll(string(g), `"firing"`, `"resolved"`))
		}
		resp, err := http.Post(url(), "application/json", bytes.NewReader(g))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post("firing")
	root := h.message(alertsCh, "the alert thread", func(m slackemu.Message) bool { return m.ThreadTS == "" && strings.Contains(body(m), "FIRING:") })
	h.message(alertsCh, "the execution", func(m slackemu.Message) bool {
		return m.ThreadTS == root.TS && strings.Contains(body(m), "example-echo v1.0.0")
	})
	h.stop()
	h.start()
	post("firing") // a repeat while it still runs
	h.waitFor("the repeat handled", func() bool { return h.rb.bot.AlertBacklog() == 0 })
	post("resolved")
	h.message(alertsCh, "the resolution in the original thread", func(m slackemu.Message) bool {
		return m.ThreadTS == root.TS && strings.Contains(body(m), "Resolved:")
	})
	rows, _ := h.rb.store.History(context.Background(), engine.HistoryQuery{})
	if len(rows) != 1 {
		t.Errorf("%d executions after the restart and the repeat, want 1", len(rows))
	}
	roots := 0
	for _, m := range h.emu.AllMessages(alertsCh) {
		if m.ThreadTS == "" && strings.Contains(body(m), "FIRING:") {
			roots++
		}
	}
	if roots != 1 {
		t.Errorf("%d alert threads, want 1", roots)
	}
}

// More distinct alerts than the channel's post budget answers at once (with
// Slack's real limits): one grouped storm message answers them first,
// before all but the first few threads, and every alert then gets its own
// thread as the budget allows; the storm message ends saying so. No call
// is answered 429.
func TestAlertStormGetsOneGroupedAnswerFirst(t *testing.T) {
	h, alertsCh := newAlertE2E(t)
	url := "http://" + h.rb.addr + "/alertmanager"
	const n = 12
	var group []map[string]string
	for i := 0; i < n; i++ {
		group = append(group, map[string]string{"alertname": "CheckoutSlow", "service": fmt.Sprintf("storm-%02d", i), "environment": "staging"})
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(webhookGroup(group...)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	roots := func() (storm *slackemu.Message, threads int, before int) {
		for _, m := range h.emu.Messages(alertsCh) {
			switch {
			case strings.Contains(body(m), "Alert storm"):
				storm = &m
			case strings.Contains(body(m), "FIRING:") && strings.Contains(body(m), "service=storm-"):
				threads++
				if storm == nil {
					before++
				}
			}
		}
		return storm, threads, before
	}
	h.waitFor("every alert in its own thread", func() bool { _, threads, _ := roots(); return threads == n })
	storm, _, before := roots()
	if storm == nil {
		t.Fatal("no storm message")
	}
	if before >= 3 {
		t.Errorf("%d threads were posted before the storm message", before)
	}
	h.message(alertsCh, "the storm message saying every alert has its thread", contains("Alert storm: 12 alerts firing", "Every one has its own thread now"))
	if len(storm.History) > 0 && !strings.Contains(storm.History[0].Text+string(storm.History[0].Blocks), "service=storm-") {
		t.Errorf("the storm message's first version lists no alert: %s", storm.History[0].Blocks)
	}
	if rl := h.emu.RateLimited(); rl != 0 {
		t.Errorf("%d calls answered 429", rl)
	}
}
