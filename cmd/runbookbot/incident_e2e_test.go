package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/incident"
	"github.com/runbookbot/runbookbot/integrations/incident/pdemu"
)

// incidentMappings starts example-echo for CheckoutDown alerts.
const incidentMappings = `mappings:
  - alert: CheckoutDown
    runbook: example-echo
    autoTrigger: true
    parameters:
      service: "{{ $labels.service }}"
      environment: "{{ $labels.environment }}"
`

// killPoint is a PagerDuty request at which the bot process is killed
// with SIGKILL: before PagerDuty acts on it, or after (the answer is lost
// with the process).
type killPoint struct {
	what  string
	match func(method, path, body string) bool
	apply bool
}

// pdKiller sits in front of the PagerDuty emulator and kills the serve
// process at each kill point in turn.
type pdKiller struct {
	emu    *pdemu.Server
	points []killPoint
	kill   func()

	mu   sync.Mutex
	next int
	hits []string
}

func (k *pdKiller) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	k.mu.Lock()
	var p *killPoint
	if k.next < len(k.points) && k.points[k.next].match(r.Method, r.URL.Path, string(body)) {
		p = &k.points[k.next]
		k.next++
		k.hits = append(k.hits, p.what)
	}
	k.mu.Unlock()
	if p == nil {
		k.emu.ServeHTTP(w, r)
		return
	}
	k.kill()
	if p.apply {
		k.emu.ServeHTTP(httptest.NewRecorder(), r)
	}
	http.Error(w, "the client is gone", http.StatusServiceUnavailable)
}

func (k *pdKiller) done() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.next
}

// supervisor keeps one `runbookbot serve` process running: a killed one
// is replaced by a new process on the same data directory.
type supervisor struct {
	t    *testing.T
	emu  *slackemu.Server
	env  []string
	args []string

	mu      sync.Mutex
	cur     *serveChild
	killed  bool
	started int
	logs    []string
}

func (s *supervisor) ensure() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && !s.killed {
		return
	}
	s.cur = startServe(s.t, s.emu, fmt.Sprintf("serve-%d", s.started), s.env, s.args...)
	s.logs = append(s.logs, s.cur.log)
	s.killed = false
	s.started++
}

// kill ends the current process with SIGKILL.
func (s *supervisor) kill() {
	s.mu.Lock()
	c := s.cur
	s.killed = true
	s.mu.Unlock()
	if c != nil {
		c.kill()
	}
}

// expectedNotes is the timeline an execution's events make, as a person
// reading the incident sees it: one note per event that has one, the
// escalation note after a failure or rollback.
func expectedNotes(evs []engine.Event) []string {
	var out []string
	for _, e := range evs {
		switch e.Type {
		case engine.EventExecutionStarted:
			out = append(out, "Runbook started: "+e.RunbookName)
		case engine.EventStepFinished:
			out = append(out, fmt.Sprintf("Step: %s — %s", e.Step.Name, e.Step.Status))
			if e.Step.Phase == engine.PhaseRollback {
				out[len(out)-1] = fmt.Sprintf("Rollback step: %s — %s", e.Step.Name, e.Step.Status)
			}
		case engine.EventApprovalRequested:
			out = append(out, "Approval requested for: "+e.Approval.Step)
		case engine.EventApprovalDecided:
			out = append(out, fmt.Sprintf("Approval %s: %s — %s", e.Approval.Decision, e.Approval.Step, e.Approval.Decision))
		case engine.EventRollbackStarted:
			out = append(out, "Rollback started")
		case engine.EventRollbackFinished:
			out = append(out, "Rollback finished — success")
			if e.Rollback != nil && e.Rollback.Success != nil && !*e.Rollback.Success {
				out[len(out)-1] = "Rollback finished — failure"
			}
		case engine.EventExecutionFinished:
			switch e.Outcome {
			case engine.OutcomeSuccess:
				out = append(out, "Runbook completed successfully — success")
			case engine.OutcomeRollback:
				out = append(out, "Runbook triggered rollback — rollback", incident.EscalationNote+" — escalated")
			default:
				out = append(out, fmt.Sprintf("outcome %s", e.Outcome))
			}
		}
	}
	return out
}

func noteTitles(emu *pdemu.Server, id string) (titles, markers []string) {
	for _, n := range emu.Notes(id) {
		titles = append(titles, firstLine(n.Content))
		if m := noteMarker.FindStringSubmatch(n.Content); m != nil {
			markers = append(markers, m[1])
		}
	}
	return titles, markers
}

// `runbookbot serve` with RUNBOOKBOT_INCIDENT_CONFIG against the Slack and
// PagerDuty emulators. An alert whose fingerprint is an open incident's
// key starts example-echo in production: the execution attaches to that
// incident, every step, the approval request and bob's decision and the
// outcome become notes, and success resolves it. A manual run whose
// restart fails rolls back: an incident is created for it, gets the same
// notes and the seed's escalation note, and is escalated. The process is
// killed with SIGKILL five times at PagerDuty requests (before PagerDuty
// acted, and after with the answer lost) and restarted on the same data
// directory: each incident ends with exactly the notes its execution's
// events make, in order, each once.
func TestIncidentTimelineSurvivesKills(t *testing.T) {
	slack := slackemu.New(slackemu.Options{BotToken: "xoxb-test", AppToken: "xapp-test"})
	if err := slack.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slack.Close() })
	alice := slack.AddUser(slackemu.User{Name: "alice"})
	bob := slack.AddUser(slackemu.User{Name: "bob"})
	ops := slack.AddChannel("ops")
	incidents := slack.AddChannel("incidents")
	slack.AddChannel("alerts")

	pd := pdemu.New(pdemu.Config{Tokens: []string{pdTestToken},
		Users:    []pdemu.User{{ID: "PBOT001", Name: "runbookbot", Email: "runbookbot@example.com"}},
		Services: []pdemu.Service{{ID: "PSHOP01", Name: "shop", PolicyID: "PPOL001", Levels: 3}}})
	alertInc := pd.AddIncident("PSHOP01", "CheckoutDown: checkout", "fp-checkout-1")
	notePrefix := func(prefix string) func(string, string, string) bool {
		return func(method, path, body string) bool {
			return method == http.MethodPost && strings.HasSuffix(path, "/notes") && strings.Contains(body, `"content":"`+prefix)
		}
	}
	k := &pdKiller{emu: pd, points: []killPoint{
		{what: "the inspect step's note, before PagerDuty has it", match: notePrefix("Step: inspect"), apply: false},
		{what: "the approval request's note, answer lost", match: notePrefix("Approval requested for: restart"), apply: true},
		{what: "resolving the alert's incident, answer lost", apply: true, match: func(method, path, body string) bool {
			return method == http.MethodPut && path == "/incidents/"+alertInc && strings.Contains(body, `"resolved"`)
		}},
		{what: "creating the manual run's incident, answer lost", apply: true, match: func(method, path, _ string) bool {
			return method == http.MethodPost && path == "/incidents"
		}},
		{what: "escalating it, before PagerDuty has it", apply: false, match: func(method, path, body string) bool {
			return method == http.MethodPut && strings.Contains(body, `"escalation_level"`)
		}},
	}}
	pdSrv := httptest.NewServer(k)
	t.Cleanup(pdSrv.Close)

	dir := t.TempDir()
	copyRunbook(t, dir, "example-echo.yaml")
	writeFile(t, dir, "mappings.yaml", incidentMappings)
	data := filepath.Join(t.TempDir(), "data")
	addr := freePort(t)
	sup := &supervisor{t: t, emu: slack,
		env:  []string{"RUNBOOKBOT_INCIDENT_CONFIG=" + incidentConfigFile(t, pdSrv.URL), "PD_TOKEN=" + pdTestToken, "RUNBOOKBOT_DRIFT_INTERVAL=0"},
		args: []string{"--runbooks", dir, "--data-dir", data, "--no-rbac", "--listen", addr}}
	k.kill = sup.kill
	t.Cleanup(sup.kill)

	// until keeps a bot running, approves what waits (as bob) and polls
	// cond until it holds.
	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			sup.ensure()
			for _, m := range slack.Messages(incidents) {
				if id := buttonID(m, "approval:approve:"); id != "" {
					_ = slack.ClickButton(bob, incidents, m.TS, id) // refused while no bot is connected: clicked again
				}
			}
			if cond() {
				return
			}
			if time.Now().After(deadline) {
				for _, inc := range pd.Incidents() {
					titles, _ := noteTitles(pd, inc.ID)
					t.Logf("incident %s (%s, level %d): %q", inc.Key, inc.Status, inc.EscalationLevel, titles)
				}
				t.Fatalf("timed out waiting for %s (kill points passed: %v)", what, k.hits)
			}
			select {
			case <-slack.Changed():
			case <-time.After(100 * time.Millisecond): // the bot and PagerDuty progress unseen by the Slack emulator
			}
		}
	}
	connected := func() bool { return slack.Connections() == 1 }

	until("the bot connected", connected)
	alert, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "runbookbot", "groupLabels": map[string]string{},
		"alerts": []any{map[string]any{"status": "firing", "fingerprint": "fp-checkout-1", "startsAt": "2026-11-27T10:00:00Z",
			"labels": map[string]string{"alertname": "CheckoutDown", "service": "checkout", "environment": "production"}}}})
	until("the alert accepted", func() bool {
		resp, err := http.Post("http://"+addr+"/alertmanager", "application/json", bytes.NewReader(alert))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	until("the alert's incident resolved", func() bool {
		inc, _ := pd.Incident(alertInc)
		return inc.Status == "resolved" && k.done() == 3
	})
	until("the bot back after the kill at the resolve", connected)
	if err := slack.SlashCommand(alice, ops, "run example-echo service=cart failRestart=true"); err != nil {
		t.Fatal(err)
	}
	var created pdemu.Incident
	until("the manual run's incident escalated", func() bool {
		for _, inc := range pd.Incidents() {
			if inc.ID != alertInc && inc.EscalationLevel == 2 {
				created = inc
				return k.done() == len(k.points)
			}
		}
		return false
	})
	sup.kill()

	if n := len(pd.Incidents()); n != 2 {
		t.Errorf("%d incidents, want the alert's and one created for the manual run", n)
	}
	rows, err := readHistory(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d executions in the store, want 2", len(rows))
	}
	for _, r := range rows {
		evs, err := withStore(data, func(s engine.Store) ([]engine.Event, error) { return s.Events(context.Background(), r.ExecutionID) })
		if err != nil {
			t.Fatal(err)
		}
		incID, wantOutcome := alertInc, engine.OutcomeSuccess
		if r.Trigger.Type != "alert" {
			incID, wantOutcome = created.ID, engine.OutcomeRollback
			if created.Key != "runbookbot-"+r.ExecutionID || created.Status != "triggered" {
				t.Errorf("created incident key %q status %q, want runbookbot-%s, still open", created.Key, created.Status, r.ExecutionID)
			}
		}
		if r.Outcome != wantOutcome {
			t.Errorf("execution %s (%s) ended %s, want %s", r.ExecutionID, r.Trigger.Type, r.Outcome, wantOutcome)
		}
		got, markers := noteTitles(pd, incID)
		want := expectedNotes(evs)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("incident %s for the %s execution has notes\n  %s\nwant\n  %s", incID, r.Trigger.Type, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		seen := map[string]bool{}
		for _, m := range markers {
			if seen[m] {
				t.Errorf("entry %s written twice", m)
			}
			seen[m] = true
		}
		if len(markers) != len(got) {
			t.Errorf("%d of %d notes carry the entry marker", len(markers), len(got))
		}
	}
	if inc, _ := pd.Incident(alertInc); !strings.Contains(inc.Resolution, "resolution_type: automated") {
		t.Errorf("the alert's incident resolution = %q", inc.Resolution)
	}
	// The approval decision names who decided.
	for _, n := range pd.Notes(alertInc) {
		if strings.HasPrefix(n.Content, "Approval approve") && !strings.Contains(n.Content, "approver: "+bob) {
			t.Errorf("the decision note does not name bob (%s):\n%s", bob, n.Content)
		}
	}
	// The token was a reference: no process wrote it anywhere.
	for _, l := range sup.logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(pdTestToken)) {
			t.Errorf("%s contains the PagerDuty token", filepath.Base(l))
		}
	}
	t.Logf("%d processes, killed at: %s", sup.started, strings.Join(k.hits, "; "))
}
