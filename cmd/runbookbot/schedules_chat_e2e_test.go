package main

import (
	"testing"
)

const nightlyE2ERunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: nightly-report, version: "1.0.0", description: "Nightly report"}
trigger: {type: schedule, schedule: "0 2 * * *"}
steps:
  - {name: say, type: log, action: print, params: {message: "nightly"}}
`

// On Slack, `/runbook schedules` lists serve's schedules with their next
// run; pausing needs schedules:manage, which no one holds here: the
// refusal names it.
func TestSlackSchedulesCommand(t *testing.T) {
	h := newE2E(t, true, writeFile(t, t.TempDir(), "nightly-report.yaml", nightlyE2ERunbook))
	h.slash("alice", h.ops, "schedules")
	h.ephemeral("alice", "nightly-report")
	h.ephemeral("alice", "next run")
	h.slash("alice", h.ops, "schedules pause nightly-report")
	h.ephemeral("alice", "schedules:manage")
}

// On Discord, /runbook schedules action:pause name:… pauses a schedule for
// serve's scheduler (no RBAC here), the list then says who paused it, and
// resume lets it run again.
func TestDiscordSchedulesCommand(t *testing.T) {
	h := newDiscordE2E(t, false, writeFile(t, t.TempDir(), "nightly-report.yaml", nightlyE2ERunbook))
	h.cmd("bob", h.ops, "schedules")
	h.ephemeral("bob", "next run")
	h.cmd("bob", h.ops, "schedules action:pause name:nightly-report")
	h.ephemeral("bob", "Paused the schedule of")
	h.cmd("carol", h.ops, "schedules")
	h.ephemeral("carol", "paused by")
	if rows, err := h.rb.api.sched.List(t.Context()); err != nil || len(rows) != 1 || !rows[0].Paused || rows[0].PausedBy != "discord:"+h.users["bob"] {
		t.Fatalf("scheduler's view = %+v, %v; want nightly-report paused by bob", rows, err)
	}
	h.cmd("bob", h.ops, "schedules action:resume name:nightly-report")
	h.ephemeral("bob", "Resumed the schedule of")
	if rows, _ := h.rb.api.sched.List(t.Context()); len(rows) != 1 || rows[0].Paused {
		t.Errorf("after resume: %+v", rows)
	}
}
