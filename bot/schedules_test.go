package bot

import (
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/commands/schedule"
	"github.com/runbookbot/runbookbot/engine"
)

const nightlyRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: nightly, version: "1.0.0"}
trigger: {type: schedule, schedule: "0 2 * * *"}
steps:
  - {name: say, type: log, action: print, params: {message: "nightly"}}
`

// fake:U1 may list, fake:U2 may also pause and resume schedules.
const schedulesRBAC = `roles:
  - name: viewer
    permissions: [runbooks:list]
  - name: admin
    inherits: viewer
    permissions: [schedules:manage]
assignments:
  - role: viewer
    subjects: [{user: "fake:U1"}]
  - role: admin
    subjects: [{user: "fake:U2"}]
`

// withSchedules loads a scheduled runbook and RBAC, and gives the bot a
// real scheduler over a memory store on the harness's clock.
func withSchedules(h *harness) {
	h.t.Helper()
	cat, diags := engine.LoadSources(h.reg, []string{"gated.yaml", "nightly.yaml", "rbac.yaml"},
		map[string][]byte{"gated.yaml": []byte(testRunbooks), "nightly.yaml": []byte(nightlyRunbook), "rbac.yaml": []byte(schedulesRBAC)})
	if len(diags) > 0 {
		h.t.Fatal(diags)
	}
	h.cat = cat
	h.auth = commands.NewAuthorizer(cat.RBAC, nil)
	h.schedules = schedule.New(schedule.Config{Store: schedule.NewMemoryStore(), Catalog: func() *engine.Catalog { return h.cat },
		Clock: h.clock, Auth: h.auth})
}

// `/runbook schedules` lists each scheduled runbook with its next run;
// pausing and resuming need schedules:manage, and a refusal says which
// permission is missing; a paused schedule shows who paused it and when.
func TestSchedulesFromChat(t *testing.T) {
	h := newHarnessWith(t, withSchedules)
	list := replyText(h.do("U1", "schedules"))
	// The harness's clock reads 2026-11-27 10:00 UTC.
	if !strings.Contains(list, "nightly 0 2 * * * — next run 2026-11-28 02:00 UTC") {
		t.Errorf("schedules = %q, want nightly with its next run", list)
	}

	refused := replyText(h.do("U1", "schedules pause nightly"))
	if !strings.Contains(refused, "[refused]") || !strings.Contains(refused, "schedules:manage") {
		t.Errorf("pause by a viewer = %q, want a refusal naming schedules:manage", refused)
	}
	if list := replyText(h.do("U1", "schedules")); strings.Contains(list, "paused") {
		t.Errorf("a refused pause paused it: %q", list)
	}

	if r := replyText(h.do("U2", "schedules pause nightly")); !strings.Contains(r, "Paused the schedule of nightly") {
		t.Errorf("pause by an admin = %q", r)
	}
	list = replyText(h.do("U1", "schedules"))
	if !strings.Contains(list, "nightly 0 2 * * * — [stop] paused by @fake:U2 at 2026-11-27 10:00 UTC") {
		t.Errorf("schedules after the pause = %q, want who paused it and when", list)
	}

	if r := replyText(h.do("U2", "schedules resume nightly")); !strings.Contains(r, "Resumed the schedule of nightly") || !strings.Contains(r, "Next run: 2026-11-28 02:00 UTC") {
		t.Errorf("resume = %q", r)
	}
	if list := replyText(h.do("U1", "schedules")); strings.Contains(list, "paused") || !strings.Contains(list, "next run") {
		t.Errorf("schedules after the resume = %q", list)
	}

	if r := replyText(h.do("U2", "schedules pause gated")); !strings.Contains(r, "gated is not a runbook with a schedule") {
		t.Errorf("pausing a runbook without a schedule = %q", r)
	}
	if r := replyText(h.do("U1", "schedules pause")); !strings.Contains(r, "which schedule?") {
		t.Errorf("pause without a name = %q", r)
	}
}

// Without a scheduler the bot says so rather than listing nothing.
func TestSchedulesWithoutAScheduler(t *testing.T) {
	h := newHarness(t)
	if r := replyText(h.do("U1", "schedules")); !strings.Contains(r, "runs no schedules") {
		t.Errorf("schedules = %q", r)
	}
}
