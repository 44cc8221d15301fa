package schedule_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/commands/schedule"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// quarterHours lists the quarter-hour ticks in (from, from+d].
func quarterHours(from time.Time, d time.Duration) []string {
	var out []string
	for t := from.Add(15 * time.Minute); !t.After(from.Add(d)); t = t.Add(15 * time.Minute) {
		out = append(out, t.Format("01-02 15:04"))
	}
	return out
}

func TestEveryQuarterHourForADay(t *testing.T) {
	r := newRig(t, catalog(t, runbook("report", `{type: schedule, schedule: "*/15 * * * *"}`)))
	st := &starter{}
	r.start(st)
	r.run(24*time.Hour, time.Minute)

	reqs := st.requests()
	if got, want := ticks(reqs), quarterHours(day0, 24*time.Hour); !slices.Equal(got, want) {
		t.Fatalf("fired %d ticks, want the %d quarter hours of the day:\ngot  %v\nwant %v", len(got), len(want), got, want)
	}
	for _, req := range reqs {
		tr := req.Trigger
		if tr.Type != "schedule" || tr.TriggeredBy != "schedule:report" || tr.Platform != "slack" || tr.Channel != "#ops" {
			t.Fatalf("trigger = %+v, want type schedule by schedule:report in slack #ops", tr)
		}
		if strings.Contains(tr.Source, "late") || req.Context["scheduleLate"] != false {
			t.Fatalf("an on-time tick is marked late: %q %v", tr.Source, req.Context)
		}
		if req.Runbook != "report" {
			t.Fatalf("started %q, want report", req.Runbook)
		}
	}
}

func TestDescriptorsAndTimezones(t *testing.T) {
	tests := []struct {
		name    string
		trigger string
		run     time.Duration
		step    time.Duration
		want    []string
	}{
		{"@every 30s", `{type: schedule, schedule: "@every 30s"}`, 2 * time.Minute, 10 * time.Second,
			[]string{"01-01 00:00", "01-01 00:01", "01-01 00:01", "01-01 00:02"}},
		{"@hourly", `{type: schedule, schedule: "@hourly"}`, 3 * time.Hour, time.Minute,
			[]string{"01-01 01:00", "01-01 02:00", "01-01 03:00"}},
		// 09:00 in Tokyo (UTC+9, no daylight saving) is 00:00 UTC.
		{"Asia/Tokyo", `{type: schedule, schedule: "0 9 * * *", timezone: Asia/Tokyo}`, 48 * time.Hour, 15 * time.Minute,
			[]string{"01-02 00:00", "01-03 00:00"}},
		// 09:00 in New York is 14:00 UTC in January.
		{"America/New_York", `{type: schedule, schedule: "0 9 * * *", timezone: America/New_York}`, 48 * time.Hour, 15 * time.Minute,
			[]string{"01-01 14:00", "01-02 14:00"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, catalog(t, runbook("job", tc.trigger)))
			st := &starter{}
			r.start(st)
			r.run(tc.run, tc.step)
			if got := ticks(st.requests()); !slices.Equal(got, tc.want) {
				t.Errorf("ticks = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDaylightSavingChange(t *testing.T) {
	// New York moves to daylight time on 2030-03-10: 09:00 local is then
	// 13:00 UTC instead of 14:00.
	cat := catalog(t, runbook("job", `{type: schedule, schedule: "0 9 * * *", timezone: America/New_York}`))
	r := &rig{t: t, clock: enginetest.NewFakeClock(time.Date(2030, 3, 9, 0, 0, 0, 0, time.UTC)), store: schedule.NewMemoryStore(), cat: cat}
	st := &starter{}
	r.start(st)
	r.run(72*time.Hour, 15*time.Minute)
	want := []string{"03-09 14:00", "03-10 13:00", "03-11 13:00"}
	if got := ticks(st.requests()); !slices.Equal(got, want) {
		t.Errorf("ticks = %v, want %v", got, want)
	}
}

func TestRestartDoesNotFireATickTwice(t *testing.T) {
	r := newRig(t, catalog(t, runbook("report", `{type: schedule, schedule: "*/15 * * * *"}`)))
	first := &starter{}
	_, stop := r.start(first)
	r.run(30*time.Minute, time.Minute) // fires 00:15 and 00:30
	stop()

	// A new process starts at once, at 00:30, and runs another hour.
	second := &starter{}
	r.start(second)
	r.run(time.Hour, time.Minute)

	if got, want := ticks(first.requests()), []string{"01-01 00:15", "01-01 00:30"}; !slices.Equal(got, want) {
		t.Errorf("first process fired %v, want %v", got, want)
	}
	if got, want := ticks(second.requests()), []string{"01-01 00:45", "01-01 01:00", "01-01 01:15", "01-01 01:30"}; !slices.Equal(got, want) {
		t.Errorf("restarted process fired %v, want %v (no tick again, none missing)", got, want)
	}
}

func TestDowntimeRunsOnlyTheLatestMissedTickLate(t *testing.T) {
	r := newRig(t, catalog(t, runbook("report", `{type: schedule, schedule: "*/15 * * * *"}`)))
	first := &starter{}
	_, stop := r.start(first)
	r.run(15*time.Minute, time.Minute) // fires 00:15
	stop()

	// Down for five hours and seven minutes: 00:30 … 05:15 are missed.
	r.clock.Advance(5*time.Hour + 7*time.Minute)
	second := &starter{}
	r.start(second)
	reqs := second.requests()
	if len(reqs) != 1 {
		t.Fatalf("after downtime the new process started %d runs at once, want exactly 1 (no burst):\n%s", len(reqs), sources(reqs))
	}
	late := reqs[0]
	if got := late.Trigger.Tick.UTC(); !got.Equal(day0.Add(5*time.Hour + 15*time.Minute)) {
		t.Errorf("late run's tick = %s, want the latest missed one, 05:15", got)
	}
	if late.Context["scheduleLate"] != true || late.Context["scheduleLateBy"] != "7m0s" {
		t.Errorf("late run's context = %v, want scheduleLate true, scheduleLateBy 7m0s", late.Context)
	}
	if !strings.Contains(late.Trigger.Source, "late") || !strings.Contains(late.Trigger.Source, "05:15") {
		t.Errorf("late run's trigger source %q does not say it runs late for the 05:15 tick (chat shows the source)", late.Trigger.Source)
	}

	// It goes on on time from the next tick.
	r.run(8*time.Minute, time.Minute)
	reqs = second.requests()
	if len(reqs) != 2 || reqs[1].Context["scheduleLate"] != false || !reqs[1].Trigger.Tick.Equal(day0.Add(5*time.Hour+30*time.Minute)) {
		t.Errorf("after the late run: %v, want the 05:30 tick on time", ticks(reqs))
	}

	// Restarting right away does not run the late tick again.
	third := &starter{}
	r.start(third)
	if got := third.requests(); len(got) != 0 {
		t.Errorf("a second restart ran %v again", ticks(got))
	}
}

func TestTwoReplicasFireEachTickOnce(t *testing.T) {
	r := newRig(t, catalog(t, runbook("report", `{type: schedule, schedule: "*/15 * * * *"}`), runbook("backup", `{type: schedule, schedule: "@hourly"}`)))
	a, b := &starter{}, &starter{}
	r.start(a)
	r.start(b)
	r.run(24*time.Hour, 5*time.Minute)

	all := append(a.requests(), b.requests()...)
	byRunbook := map[string][]engine.StartRequest{}
	for _, req := range all {
		byRunbook[req.Runbook] = append(byRunbook[req.Runbook], req)
	}
	if got, want := ticks(byRunbook["report"]), quarterHours(day0, 24*time.Hour); !slices.Equal(got, want) {
		t.Errorf("report: %d runs across both replicas, want each of the %d ticks once:\n%v", len(got), len(want), got)
	}
	if got := len(byRunbook["backup"]); got != 24 {
		t.Errorf("backup ran %d times across both replicas, want 24", got)
	}
}

// perms is an Authorizer from a fixed table.
type perms map[string][]string

func (p perms) Allowed(_ context.Context, user, perm string) (bool, error) {
	return slices.Contains(p[user], perm), nil
}

func TestPauseAndResume(t *testing.T) {
	r := newRig(t, catalog(t, runbook("report", `{type: schedule, schedule: "*/15 * * * *"}`), runbook("manual", `{type: manual}`)))
	auth := perms{"carol": {schedule.PermManage}}
	st := &starter{}
	sched, _ := r.start(st, func(c *schedule.Config) { c.Auth = auth })
	ctx := context.Background()

	if err := sched.Pause(ctx, "report", "alice"); !errors.Is(err, schedule.ErrNotAllowed) {
		t.Fatalf("alice (no %s) pausing: %v, want ErrNotAllowed", schedule.PermManage, err)
	}
	if err := sched.Pause(ctx, "manual", "carol"); !errors.Is(err, schedule.ErrUnknown) {
		t.Fatalf("pausing a runbook without a schedule: %v, want ErrUnknown", err)
	}
	r.run(15*time.Minute, time.Minute) // 00:15 runs
	if err := sched.Pause(ctx, "report", "carol"); err != nil {
		t.Fatalf("carol pausing: %v", err)
	}
	list, err := sched.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !list[0].Paused || list[0].PausedBy != "carol" || list[0].Runbook != "report" {
		t.Fatalf("List after pause = %+v, want report paused by carol", list)
	}

	// A second replica sharing the store honours the pause, and so does a
	// restart of the first.
	other := &starter{}
	r.start(other)
	r.run(time.Hour, time.Minute) // 00:30 … 01:15 are skipped
	if got := len(st.requests()) + len(other.requests()); got != 1 {
		t.Fatalf("%d runs while paused (including the 00:15 before), want 1", got)
	}

	if err := sched.Resume(ctx, "report", "carol"); err != nil {
		t.Fatalf("resuming: %v", err)
	}
	r.run(15*time.Minute, time.Minute) // 01:30 runs
	got := append(ticks(st.requests()), ticks(other.requests())...)
	slices.Sort(got)
	if want := []string{"01-01 00:15", "01-01 01:30"}; !slices.Equal(got, want) {
		t.Errorf("ticks = %v, want %v (nothing from the pause runs late)", got, want)
	}
}

func TestPausedTicksAreNotCaughtUpAfterRestart(t *testing.T) {
	r := newRig(t, catalog(t, runbook("report", `{type: schedule, schedule: "*/15 * * * *"}`)))
	st := &starter{}
	sched, stop := r.start(st)
	r.run(15*time.Minute, time.Minute) // 00:15
	if err := sched.Pause(context.Background(), "report", "carol"); err != nil {
		t.Fatal(err)
	}
	stop()
	r.clock.Advance(2 * time.Hour) // down, and paused: 00:30 … 02:15 missed
	// Resumed from another replica (chat) while this one is down.
	other := schedule.New(schedule.Config{Store: r.store, Clock: r.clock, Catalog: func() *engine.Catalog { return r.cat }})
	if err := other.Resume(context.Background(), "report", "carol"); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(time.Minute)
	again := &starter{}
	r.start(again)
	if got := again.requests(); len(got) != 0 {
		t.Errorf("after a paused downtime the restart ran %v late; ticks of a pause must not run", ticks(got))
	}
}

func TestListShowsNextFireTimes(t *testing.T) {
	cat := catalog(t,
		runbook("report", `{type: schedule, schedule: "*/15 * * * *"}`),
		runbook("nightly", `{type: schedule, schedule: "30 2 * * *", timezone: Europe/Berlin}`),
		runbook("by-hand", `{type: manual}`))
	clock := enginetest.NewFakeClock(day0.Add(10*time.Hour + 7*time.Minute))
	s := schedule.New(schedule.Config{Store: schedule.NewMemoryStore(), Clock: clock, Catalog: func() *engine.Catalog { return cat }, Channel: "#ops"})
	list, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(list))
	for i, l := range list {
		got[i] = fmt.Sprintf("%s %s %s %s", l.Runbook, l.Schedule, l.Next.UTC().Format(time.RFC3339), l.Channel)
	}
	want := []string{
		"nightly 30 2 * * * 2030-01-02T01:30:00Z #ops", // 02:30 in Berlin (UTC+1 in winter)
		"report */15 * * * * 2030-01-01T10:15:00Z #ops",
	}
	if !slices.Equal(got, want) {
		t.Errorf("List =\n%v\nwant\n%v", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLatest(t *testing.T) {
	at := func(h, m int) time.Time { return day0.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	tests := []struct {
		name        string
		spec        string
		after, til  time.Time
		want        time.Time
		wantDropped int
	}{
		{"none in the interval", "*/15 * * * *", at(0, 15), at(0, 29), time.Time{}, 0},
		{"the one at the end", "*/15 * * * *", at(0, 15), at(0, 30), at(0, 30), 0},
		{"five hours of quarter hours", "*/15 * * * *", at(0, 15), at(5, 22), at(5, 15), 19},
		{"a day of minutes", "* * * * *", at(0, 0), at(24, 0), at(24, 0), 24*60 - 1},
		{"a month of minutes, counted up to 10,000", "* * * * *", at(0, 0), at(30*24, 0), at(30*24, 0), 10000},
		{"a monthly one", "0 0 1 * *", day0, day0.AddDate(0, 3, 5), day0.AddDate(0, 3, 0), 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := schedule.Parse("x", tc.spec, "")
			if err != nil {
				t.Fatal(err)
			}
			got, dropped := s.Latest(tc.after, tc.til)
			if !got.Equal(tc.want) || dropped != tc.wantDropped {
				t.Errorf("Latest = %s, %d dropped; want %s, %d", got, dropped, tc.want, tc.wantDropped)
			}
		})
	}
}

func TestTriggerParametersReachTheRun(t *testing.T) {
	src := `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: needs-input, version: "1.0.0"}
trigger:
  type: schedule
  schedule: "@hourly"
  parameters: {service: billing}
parameters:
  - {name: service, type: string, required: true}
  - {name: replicas, type: integer, default: 2}
steps:
  - {name: say, type: log, action: print, params: {message: "{{ service }}"}}
`
	r := newRig(t, catalog(t, src))
	st := &starter{}
	r.start(st)
	r.run(time.Hour, 5*time.Minute)
	reqs := st.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d runs in an hour of @hourly, want 1", len(reqs))
	}
	if got := reqs[0].Params; len(got) != 1 || got["service"] != "billing" {
		t.Errorf("params = %v, want service=billing from trigger.parameters (replicas from its default, in the engine)", got)
	}
}

func TestScheduledRunIsRecordedWithItsTick(t *testing.T) {
	cat := catalog(t, runbook("report", `{type: schedule, schedule: "*/15 * * * *"}`))
	r := newRig(t, cat)
	store := enginetest.NewMemStore()
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	eng := engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat, Clock: enginetest.NewFakeClock(day0)})
	t.Cleanup(eng.Close)
	r.start(eng)
	r.run(15*time.Minute, time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	for len(ids) == 0 {
		ids = eng.Active()
		if h, _ := store.History(ctx, engine.HistoryQuery{}); len(h) > 0 {
			ids = []string{h[0].ExecutionID}
		}
		if len(ids) == 0 {
			select {
			case <-store.Changed():
			case <-ctx.Done():
				t.Fatal("no execution recorded")
			}
		}
	}
	if _, err := eng.Wait(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	evs, err := store.Events(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	tr := evs[0].Trigger
	if evs[0].Type != engine.EventExecutionStarted || tr == nil || tr.Type != "schedule" || tr.Tick == nil || !tr.Tick.Equal(day0.Add(15*time.Minute)) {
		t.Fatalf("first event %s trigger %+v, want execution.started with type schedule and tick 00:15", evs[0].Type, tr)
	}
	if tr.Channel != "#ops" || tr.Platform != "slack" {
		t.Errorf("trigger posts to %q on %q, want #ops on slack (so chat shows the thread)", tr.Channel, tr.Platform)
	}
	if got := evs[0].Parameters["target"]; got != "nightly" {
		t.Errorf("parameter target = %v, want its default", got)
	}
}

// A runbook's trigger.channel is where its scheduled runs post, over the
// configured default.
func TestRunbookChannelWinsOverTheDefault(t *testing.T) {
	cat := catalog(t, runbook("report", `{type: schedule, schedule: "*/15 * * * *", channel: "#reports"}`))
	r := newRig(t, cat)
	store := enginetest.NewMemStore()
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	eng := engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat, Clock: enginetest.NewFakeClock(day0)})
	t.Cleanup(eng.Close)
	r.start(eng)
	r.run(15*time.Minute, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if h, _ := store.History(ctx, engine.HistoryQuery{}); len(h) > 0 {
			if h[0].Trigger.Channel != "#reports" || h[0].Trigger.Platform != "slack" {
				t.Fatalf("scheduled run posts to %q on %q, want #reports on slack", h[0].Trigger.Channel, h[0].Trigger.Platform)
			}
			return
		}
		select {
		case <-store.Changed():
		case <-ctx.Done():
			t.Fatal("no execution recorded")
		}
	}
}
