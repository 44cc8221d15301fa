package commands

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// fakeDir is a Directory answering from members, or failing with errs.
// Safe for concurrent use; calls counts lookups.
type fakeDir struct {
	mu      sync.Mutex
	members map[string][]string
	errs    map[string]error
	calls   int
}

func (d *fakeDir) UserGroupMembers(_ context.Context, g string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if err := d.errs[g]; err != nil {
		return nil, err
	}
	if m, ok := d.members[g]; ok {
		return m, nil
	}
	return nil, errors.New("no_such_subteam")
}

func (d *fakeDir) set(g string, members []string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.members == nil {
		d.members = map[string][]string{}
	}
	if d.errs == nil {
		d.errs = map[string]error{}
	}
	d.members[g], d.errs[g] = members, err
}

func (d *fakeDir) lookups() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

// logLines counts the log lines at level that contain substr.
func logLines(b *enginetest.LogBuffer, level, substr string) int {
	n := 0
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, "level="+level) && strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

func seedConfig(t *testing.T) *engine.RBACConfig {
	t.Helper()
	cat, diags := engine.LoadPaths(enginetest.NewCluster().Registry(), "../runbooks/rbac.yaml")
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	return cat.RBAC
}

func seedAuthorizer(t *testing.T) *Authorizer {
	t.Helper()
	cfg := seedConfig(t)
	cfg.Groups = []engine.Group{
		{Name: "engineering", SlackUserGroups: []string{"S-ENG"}},
		{Name: "oncall-engineers", Users: []string{"U-ONCALL"}},
		{Name: "sre-lead", SlackUserGroups: []string{"S-LEADS"}},
		{Name: "oncall-primary", Users: []string{"U-ONCALL"}},
		{Name: "platform-team", DiscordRoles: []string{"R-PLATFORM"}},
	}
	slack := &fakeDir{members: map[string][]string{"S-ENG": {"U-ENG", "U-ONCALL"}, "S-LEADS": {"U-LEAD"}}}
	discord := &fakeDir{members: map[string][]string{"R-PLATFORM": {"42"}}}
	a := NewAuthorizer(cfg, Directories{PlatformSlack: slack, PlatformDiscord: discord})
	if err := a.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

// The seed's rbac-config: viewers read, operators execute and approve,
// admins (sre-lead, security-admin) hold everything through inheritance.
func TestSeedRBAC(t *testing.T) {
	a := seedAuthorizer(t)
	ctx := context.Background()
	tests := []struct {
		user, perm string
		want       bool
	}{
		{"U-ENG", PermList, true},
		{"U-ENG", PermExecute, false},
		{"U-ONCALL", PermExecute, true},
		{"U-ONCALL", PermApprove, true},
		{"U-ONCALL", "runbooks:create", false},
		{"U-LEAD", "rbac:manage", true},
		{"U-LEAD", PermExecute, true}, // inherited from operator via author
		{"U-LEAD", PermCancel, true},
		{"security-admin", "audit-logs:export", true},
		{"discord:42", "runbooks:create", true}, // platform-team through a Discord role
		{"42", "runbooks:create", false},        // a bare id is a Slack id
		{"U-NOBODY", PermList, false},
	}
	for _, tt := range tests {
		got, err := a.Allowed(ctx, tt.user, tt.perm)
		if err != nil || got != tt.want {
			t.Errorf("Allowed(%s, %s) = %v, %v; want %v", tt.user, tt.perm, got, err, tt.want)
		}
	}
	if ok, _ := a.Satisfies(ctx, "U-ONCALL", engine.ApproverRef{Type: "role", Value: "oncall-primary"}); !ok {
		t.Error("on-call member does not satisfy role oncall-primary")
	}
	if ok, _ := a.Satisfies(ctx, "U-ENG", engine.ApproverRef{Type: "role", Value: "oncall-primary"}); ok {
		t.Error("a viewer satisfies an approver role")
	}
	if ok, _ := a.CanBypass(ctx, "U-LEAD", []engine.Permission{{Role: "sre-lead"}}); !ok {
		t.Error("an sre-lead cannot bypass")
	}
	if ok, _ := a.CanBypass(ctx, "U-ONCALL", []engine.Permission{{Role: "sre-lead"}}); ok {
		t.Error("an operator can bypass as sre-lead")
	}
	if got := a.Mentions([]string{"oncall-primary", "sre-lead", "unknown-team"}); len(got) != 3 || got[0] != "<@U-ONCALL>" || got[1] != "<!subteam^S-LEADS>" || got[2] != "@unknown-team" {
		t.Errorf("Mentions = %v", got)
	}
}

func TestNoRBACAllowsAll(t *testing.T) {
	a := NewAuthorizer(nil, nil)
	if ok, _ := a.Allowed(context.Background(), "anyone", PermExecute); !ok {
		t.Error("without RBAC everything should be allowed")
	}
}

// An empty or unknown user id holds nothing: no role through group-only
// subjects, no approver ref, no bypass.
func TestEmptyAndUnknownIdentitiesHoldNothing(t *testing.T) {
	a := seedAuthorizer(t)
	ctx := context.Background()
	for _, user := range []string{"", " ", "U-STRANGER"} {
		for _, perm := range []string{PermList, PermExecute, PermCancel, PermApprove} {
			if ok, err := a.Allowed(ctx, user, perm); ok || err != nil {
				t.Errorf("Allowed(%q, %s) = %v, %v; want false, nil", user, perm, ok, err)
			}
		}
		if roles, _ := a.Roles(ctx, user); len(roles) != 0 {
			t.Errorf("Roles(%q) = %v; want none", user, roles)
		}
		for _, ref := range []engine.ApproverRef{
			{Type: "role", Value: "oncall-primary"}, {Type: "team", Value: "platform-team"},
			{Type: "user", Value: ""}, {Type: "permission", Value: PermApprove},
		} {
			if ok, err := a.Satisfies(ctx, user, ref); ok || err != nil {
				t.Errorf("Satisfies(%q, %+v) = %v, %v; want false, nil", user, ref, ok, err)
			}
		}
		if ok, err := a.CanBypass(ctx, user, []engine.Permission{{Role: "sre-lead"}, {Group: "engineering"}, {User: ""}}); ok || err != nil {
			t.Errorf("CanBypass(%q) = %v, %v; want false, nil", user, ok, err)
		}
	}
}

// brokenConfig is the seed's RBAC where sre-team's Slack user group does
// not exist and everything else resolves.
func brokenConfig(t *testing.T) (*engine.RBACConfig, *fakeDir) {
	t.Helper()
	cfg := seedConfig(t)
	cfg.File = "runbooks/rbac.yaml"
	cfg.Groups = []engine.Group{
		{Name: "engineering", SlackUserGroups: []string{"S-ENG"}},
		{Name: "oncall-engineers", Users: []string{"U-ONCALL"}},
		{Name: "sre-team", SlackUserGroups: []string{"no_such_subteam"}},
		{Name: "platform-team", SlackUserGroups: []string{"S-PLATFORM"}},
		{Name: "sre-lead", SlackUserGroups: []string{"S-LEADS"}},
		{Name: "oncall-primary", SlackUserGroups: []string{"S-ONCALL"}},
	}
	d := &fakeDir{}
	d.set("S-ENG", []string{"U-ENG", "U-ONCALL", "U-PLAT"}, nil)
	d.set("S-PLATFORM", []string{"U-PLAT"}, nil)
	d.set("S-LEADS", []string{"U-LEAD"}, nil)
	d.set("S-ONCALL", []string{"U-ONCALL"}, nil)
	d.set("no_such_subteam", nil, errors.New("no_such_subteam"))
	return cfg, d
}

// One chat group that cannot be fetched denies only what it could grant,
// and says so; everything that does not depend on it works.
func TestUnresolvableGroupDeniesOnlyWhatDependsOnIt(t *testing.T) {
	cfg, d := brokenConfig(t)
	a := NewAuthorizer(cfg, Directories{PlatformSlack: d})
	ctx := context.Background()
	err := a.Refresh(ctx)
	if err == nil || !strings.Contains(err.Error(), "no_such_subteam") {
		t.Fatalf("Refresh = %v; want the failing group named", err)
	}
	const wantMsg = "your access to runbooks:execute depends on Slack user group `no_such_subteam` (RBAC group sre-team), " +
		"which could not be resolved: no_such_subteam; ask an admin to fix runbooks/rbac.yaml"
	tests := []struct {
		name, user, perm string
		want             bool
		wantErr          string // "" for a plain answer
	}{
		{"operator executes", "U-ONCALL", PermExecute, true, ""},
		{"viewer lists", "U-ENG", PermList, true, ""},
		{"admin manages", "U-LEAD", "rbac:manage", true, ""},
		{"author creates", "U-PLAT", "runbooks:create", true, ""},
		{"viewer executes: sre-team could grant it", "U-ENG", PermExecute, false, wantMsg},
		{"nothing sre-team grants", "U-ENG", "rbac:manage", false, ""},
		{"stranger executes", "U-STRANGER", PermExecute, false, wantMsg},
		{"empty user", "", PermExecute, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Allowed(ctx, tt.user, tt.perm)
			if got != tt.want {
				t.Errorf("Allowed(%q, %s) = %v; want %v", tt.user, tt.perm, got, tt.want)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Allowed(%q, %s) error = %v; want none", tt.user, tt.perm, err)
				}
				return
			}
			var ge *GroupUnavailableError
			if !errors.As(err, &ge) {
				t.Fatalf("Allowed(%q, %s) error = %v; want a *GroupUnavailableError", tt.user, tt.perm, err)
			}
			if got, want := err.Error(), tt.wantErr; got != want {
				t.Errorf("message:\n got %s\nwant %s", got, want)
			}
			if ge.Group != "sre-team" || ge.ChatGroup != (ChatGroup{PlatformSlack, "no_such_subteam"}) {
				t.Errorf("error names %s / %v; want sre-team / slack no_such_subteam", ge.Group, ge.ChatGroup)
			}
		})
	}
}

// Approver checks and bypass follow the same rule as permissions.
func TestUnresolvableGroupAndApprovers(t *testing.T) {
	cfg, d := brokenConfig(t)
	d.set("S-ONCALL", nil, errors.New("ratelimited"))
	a := NewAuthorizer(cfg, Directories{PlatformSlack: d})
	ctx := context.Background()
	_ = a.Refresh(ctx)
	oncall := engine.ApproverRef{Type: "role", Value: "oncall-primary"}
	platform := engine.ApproverRef{Type: "team", Value: "platform-team"}

	if ok, err := a.Satisfies(ctx, "U-PLAT", platform); !ok || err != nil {
		t.Errorf("platform-team member as platform-team = %v, %v; want true", ok, err)
	}
	ok, err := a.Satisfies(ctx, "U-ONCALL", oncall)
	var ge *GroupUnavailableError
	if ok || !errors.As(err, &ge) || ge.Group != "oncall-primary" {
		t.Fatalf("on-call member as oncall-primary while its group is down = %v, %v; want false with a *GroupUnavailableError", ok, err)
	}
	if want := "your right to approve as oncall-primary depends on Slack user group `S-ONCALL` (RBAC group oncall-primary), which could not be resolved: ratelimited"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message = %s; want it to start %s", err, want)
	}
	// A viewer cannot approve whatever oncall-primary's members are, unless
	// sre-team (also down) makes them an operator: still unknowable.
	if ok, err := a.Satisfies(ctx, "U-ENG", oncall); ok || err == nil {
		t.Errorf("viewer as oncall-primary = %v, %v; want false with an error", ok, err)
	}
	// Someone who cannot be in anything that grants approvals:respond.
	cfgNoSRE, d2 := brokenConfig(t)
	cfgNoSRE.Assignments = cfgNoSRE.Assignments[:1] // viewers only
	d2.set("S-ONCALL", nil, errors.New("ratelimited"))
	b := NewAuthorizer(cfgNoSRE, Directories{PlatformSlack: d2})
	_ = b.Refresh(ctx)
	if ok, err := b.Satisfies(ctx, "U-ENG", oncall); ok || err != nil {
		t.Errorf("viewer without any route to approvals:respond = %v, %v; want false, nil", ok, err)
	}

	if ok, err := a.CanBypass(ctx, "U-LEAD", []engine.Permission{{Role: "sre-lead"}}); !ok || err != nil {
		t.Errorf("sre-lead bypass = %v, %v; want true", ok, err)
	}
	if ok, err := a.CanBypass(ctx, "U-ONCALL", []engine.Permission{{Group: "oncall-primary"}, {Role: "sre-lead"}}); ok || !errors.As(err, &ge) {
		t.Errorf("bypass through a group that is down = %v, %v; want false with a *GroupUnavailableError", ok, err)
	}
	if ok, err := a.CanBypass(ctx, "U-ONCALL", []engine.Permission{{Role: "sre-lead"}}); ok || err != nil {
		t.Errorf("operator bypass as sre-lead = %v, %v; want false, nil", ok, err)
	}
}

// Before any refresh nothing is known of chat groups: checks that depend
// on them say so, users named directly are unaffected.
func TestBeforeRefresh(t *testing.T) {
	cfg, d := brokenConfig(t)
	a := NewAuthorizer(cfg, Directories{PlatformSlack: d})
	ctx := context.Background()
	if ok, err := a.Allowed(ctx, "U-ONCALL", PermExecute); !ok || err != nil {
		t.Errorf("directly listed operator = %v, %v; want true", ok, err)
	}
	if ok, err := a.Allowed(ctx, "U-LEAD", "rbac:manage"); ok || !errors.Is(err, ErrNotResolved) {
		t.Errorf("admin through an unfetched group = %v, %v; want false, ErrNotResolved", ok, err)
	}
	if d.lookups() != 0 {
		t.Errorf("a check called the directory %d times; checks must not wait on chat", d.lookups())
	}
}

// A Discord role with no Discord connection is a failing group, not a
// crash or a silent grant.
func TestGroupOfAnUnconnectedPlatform(t *testing.T) {
	cfg := seedConfig(t)
	cfg.Groups = []engine.Group{{Name: "sre-lead", DiscordRoles: []string{"123"}}}
	a := NewAuthorizer(cfg, Directories{PlatformSlack: &fakeDir{}})
	err := a.Refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Discord role `123`") || !strings.Contains(err.Error(), "not connected to discord") {
		t.Errorf("Refresh = %v; want the Discord role and the missing connection named", err)
	}
}

// Run refreshes on the clock: a group that comes back grants again, a
// later failure keeps the last members, and each failure is logged once
// per change, not per refresh or request.
func TestRunRefreshesAndKeepsStaleMembers(t *testing.T) {
	cfg, d := brokenConfig(t)
	var logs enginetest.LogBuffer
	clock := enginetest.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a := NewAuthorizer(cfg, Directories{PlatformSlack: d}, WithClock(clock), WithRefreshInterval(time.Minute),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	// tick waits for Run to park on the clock, then moves the clock past the
	// interval; the timer that fired is gone at once, and Run arms the next
	// one only when that refresh is over, so waiting for it waits for the
	// refresh.
	tick := func() {
		t.Helper()
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		if err := clock.WaitTimers(wctx, 1); err != nil {
			t.Fatalf("Run never waited on the clock: %v", err)
		}
		clock.Advance(time.Minute)
		if err := clock.WaitTimers(wctx, 1); err != nil {
			t.Fatalf("Run did not come back to the clock after a refresh: %v", err)
		}
	}
	const down = "could not fetch the members of Slack user group `no_such_subteam`"
	allowed := func(user string) (bool, error) { return a.Allowed(context.Background(), user, PermExecute) }

	tick() // Run's first refresh is at once; tick also covers the next one
	if got := logLines(&logs, "WARN", down); got != 1 {
		t.Errorf("after two failing refreshes: %d Warn lines about the group; want 1\n%s", got, logs.String())
	}
	if ok, err := allowed("U-SRE"); ok || err == nil {
		t.Fatalf("sre-team member while the group is down = %v, %v; want a refusal naming it", ok, err)
	}

	d.set("no_such_subteam", []string{"U-SRE"}, nil) // an admin fixed it
	tick()
	if ok, err := allowed("U-SRE"); !ok || err != nil {
		t.Errorf("sre-team member after the group resolves = %v, %v; want true", ok, err)
	}
	if got := logLines(&logs, "INFO", "resolves again"); got != 1 {
		t.Errorf("%d Info lines about the recovery; want 1", got)
	}

	d.set("no_such_subteam", nil, errors.New("ratelimited")) // a blip
	tick()
	tick()
	if ok, err := allowed("U-SRE"); !ok || err != nil {
		t.Errorf("sre-team member during a blip = %v, %v; want true from the last members", ok, err)
	}
	if ok, err := allowed("U-ENG"); ok || err != nil {
		t.Errorf("viewer during a blip = %v, %v; want a plain refusal (membership is known)", ok, err)
	}
	if got := logLines(&logs, "WARN", down); got != 2 {
		t.Errorf("%d Warn lines about the group after a new failure twice; want 2\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "kept_members=1") {
		t.Errorf("the blip's Warn line does not say the last members are kept:\n%s", logs.String())
	}
}
