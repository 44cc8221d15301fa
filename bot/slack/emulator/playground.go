package emulator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Run creates and starts a Server and closes it when ctx is done. It is all
// another package (e.g. a "dev" playground command) needs:
//
//	srv, err := slackemu.Run(ctx, slackemu.Options{Addr: "127.0.0.1:3333"})
//	demo := srv.SeedDemo()
//	// point the bot at srv.APIURL() with srv.BotToken() / srv.AppToken(),
//	// point Alertmanager at demo.AlertWebhook, open srv.URL() in a browser.
func Run(ctx context.Context, o Options) (*Server, error) {
	s := New(o)
	if err := s.Start(); err != nil {
		return nil, err
	}
	go func() {
		<-ctx.Done()
		_ = s.Close()
	}()
	return s, nil
}

// Demo lists what SeedDemo created.
type Demo struct {
	Users        map[string]string // name → ID: alice, bob, carol
	Groups       map[string]string // handle → ID: the user groups runbooks/rbac.yaml names
	Channels     map[string]string // name → ID: ops, alerts
	AlertWebhook string            // webhook URL posting into #alerts
}

// demoGroups are the Slack user groups SeedDemo creates, by handle, with
// their members (user names).
var demoGroups = []struct {
	handle, name string
	members      []string
}{
	{"engineering", "Engineering", []string{"alice", "bob", "carol"}},
	{"oncall", "On-call (primary)", []string{"alice", "bob"}},
	{"oncall-secondary", "On-call (secondary)", []string{"carol"}},
	{"sre", "SRE", []string{"carol"}},
	{"sre-leads", "SRE leads", []string{"carol"}},
	{"platform", "Platform", []string{"bob"}},
	{"eng-managers", "Engineering managers", []string{"carol"}},
	{"eng-directors", "Engineering directors", nil},
}

// SeedDemo adds a small workspace for the playground: users alice, bob and
// carol, channels #ops and #alerts, an incoming webhook into #alerts for
// Alertmanager, and a Slack user group for every handle runbooks/rbac.yaml
// names, so `runbookbot dev --rbac` works with the playground's users:
//
//   - alice (@engineering, @oncall): runbook-viewer, runbook-operator
//     (oncall-engineers); approves as oncall-primary.
//   - bob (@engineering, @oncall, @platform): runbook-viewer,
//     runbook-operator, runbook-author (platform-team); approves as
//     oncall-primary and platform-team.
//   - carol (@engineering, @sre, @sre-leads, @oncall-secondary,
//     @eng-managers): runbook-operator and runbook-author (sre-team),
//     runbook-admin and emergency bypass (sre-lead); escalations reach
//     her as oncall-secondary and engineering-manager.
//
// @eng-directors exists with no members. Call SeedDemo after Start.
func (s *Server) SeedDemo() Demo {
	d := Demo{Users: map[string]string{}, Groups: map[string]string{}, Channels: map[string]string{}}
	for _, u := range []User{
		{Name: "alice", RealName: "Alice Operator", Email: "alice@example.com", IsAdmin: true},
		{Name: "bob", RealName: "Bob Oncall", Email: "bob@example.com"},
		{Name: "carol", RealName: "Carol Lead", Email: "carol@example.com"},
	} {
		d.Users[u.Name] = s.AddUser(u)
	}
	for _, g := range demoGroups {
		var ids []string
		for _, name := range g.members {
			ids = append(ids, d.Users[name])
		}
		d.Groups[g.handle] = s.AddUserGroup(UserGroup{Handle: g.handle, Name: g.name, Members: ids})
	}
	d.Channels["ops"] = s.AddChannel("ops")
	d.Channels["alerts"] = s.AddChannel("alerts")
	d.AlertWebhook = s.AddWebhook("", "alerts")
	return d
}

// AlertmanagerPayload builds the JSON Alertmanager's slack_configs send
// for one alert with the receiver the README recommends: the default
// title ("[FIRING:1] <alertname> (<other label values, by label name>)" or
// "[RESOLVED] …"), title_link, fallback and colour (danger/good), and, as
// the attachment text, the README's label template
//
//	text: '{{ range .Alerts }}*Alert:* {{ .Labels.alertname }}{{ "\n" }}{{ range .Labels.SortedPairs }} • *{{ .Name }}:* `{{ .Value }}`{{ "\n" }}{{ end }}{{ end }}'
//
// so the bot can read label names. The message text is empty, as
// Alertmanager leaves it. The route is taken to group by alertname.
func AlertmanagerPayload(alertName string, labels map[string]string, firing bool) []byte {
	all := map[string]string{"alertname": alertName}
	for k, v := range labels {
		if k != "alertname" {
			all[k] = v
		}
	}
	others := make([]string, 0, len(all)) // sorted by name, as Alertmanager's SortedPairs
	for k := range all {
		if k != "alertname" {
			others = append(others, k)
		}
	}
	sort.Strings(others)
	vals := make([]string, 0, len(others))
	for _, k := range others {
		vals = append(vals, all[k])
	}
	title := "[FIRING:1] " + alertName
	color := "danger"
	if !firing {
		title, color = "[RESOLVED] "+alertName, "good"
	}
	if len(vals) > 0 {
		title += " (" + strings.Join(vals, " ") + ")"
	}
	var text strings.Builder
	text.WriteString("*Alert:* " + alertName + "\n")
	for _, k := range append([]string{"alertname"}, others...) { // SortedPairs: alertname first
		text.WriteString(" • *" + k + ":* `" + all[k] + "`\n")
	}
	link := "http://alertmanager.local:9093/#/alerts?receiver=slack"
	return mustJSON(map[string]any{
		"channel": "", "username": "Alertmanager", "icon_emoji": "", "icon_url": "",
		"link_names": false, "text": "",
		"attachments": []map[string]any{{
			"title": title, "title_link": link, "pretext": "", "text": text.String(),
			"fallback": title + " | " + link, "callback_id": "", "footer": "",
			"color": color, "mrkdwn_in": []string{"fallback", "pretext", "text"},
		}},
	})
}

// DemoAlert is the alert the playground's Fire button fires by default;
// runbooks/mappings.yaml maps it to the example-echo runbook, which needs
// no cluster, with autoTrigger, so firing it starts a run in the alert's
// thread.
const DemoAlert = "RunbookbotDemoAlert"

// DemoAlertLabels are the labels the playground fires DemoAlert with, as
// the page's label field shows them.
const DemoAlertLabels = "service=checkout environment=staging"

// FireAlert posts AlertmanagerPayload through the first registered webhook
// (see AddWebhook / SeedDemo), as Alertmanager would.
func (s *Server) FireAlert(alertName string, labels map[string]string, firing bool) error {
	s.mu.Lock()
	var path string
	if len(s.webhookOrder) > 0 {
		path = s.webhookOrder[0]
	}
	s.mu.Unlock()
	if path == "" {
		return fmt.Errorf("slackemu: no webhook registered; call AddWebhook or SeedDemo")
	}
	return s.PostWebhook(path, AlertmanagerPayload(alertName, labels, firing))
}

// parseLabels turns "env=prod service=web" into a label map.
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[k] = v
		}
	}
	return out
}

// Snapshot returns the whole UI state as JSON (users, channels with
// messages and threads, ephemerals, open views, socket counters), e.g. to
// attach to a failing test's log.
func (s *Server) Snapshot() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return mustJSON(s.uiStateLocked())
}
