package commands

import (
	"context"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

type dir map[string][]string

func (d dir) UserGroupMembers(_ context.Context, g string) ([]string, error) { return d[g], nil }

func seedAuthorizer(t *testing.T) *Authorizer {
	t.Helper()
	cat, diags := engine.LoadPaths(enginetest.NewCluster().Registry(), "../runbooks/rbac.yaml")
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	cfg := cat.RBAC
	cfg.Groups = []engine.Group{
		{Name: "engineering", SlackUserGroups: []string{"S-ENG"}},
		{Name: "oncall-engineers", Users: []string{"U-ONCALL"}},
		{Name: "sre-leads", SlackUserGroups: []string{"S-LEADS"}},
		{Name: "oncall-primary", Users: []string{"U-ONCALL"}},
	}
	return NewAuthorizer(cfg, dir{"S-ENG": {"U-ENG", "U-ONCALL"}, "S-LEADS": {"U-LEAD"}})
}

// The seed's rbac-config: viewers read, operators execute and approve,
// admins (sre-leads, security-admin) hold everything through inheritance.
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
		{"security-admin", "audit-logs:export", true},
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
	if ok, _ := a.CanBypass(ctx, "U-LEAD", []engine.Permission{{Role: "runbook-admin"}}); !ok {
		t.Error("admin cannot bypass")
	}
	if got := a.Mentions([]string{"oncall-primary", "sre-leads", "unknown-team"}); len(got) != 3 || got[0] != "<@U-ONCALL>" || got[1] != "<!subteam^S-LEADS>" || got[2] != "@unknown-team" {
		t.Errorf("Mentions = %v", got)
	}
}

func TestNoRBACAllowsAll(t *testing.T) {
	a := NewAuthorizer(nil, nil)
	if ok, _ := a.Allowed(context.Background(), "anyone", PermExecute); !ok {
		t.Error("without RBAC everything should be allowed")
	}
}
