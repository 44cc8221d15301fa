package emulator

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/slack-go/slack"
)

// slackDirectory resolves Slack user groups by handle through the Web API,
// as the bot does.
type slackDirectory struct{ api *slack.Client }

func (d slackDirectory) UserGroupMembers(ctx context.Context, group string) ([]string, error) {
	gs, err := d.api.GetUserGroupsContext(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range gs {
		if g.Handle == group || g.ID == group {
			return d.api.GetUserGroupMembersContext(ctx, g.ID)
		}
	}
	return nil, fmt.Errorf("no user group @%s", group)
}

func TestSeedDemoSatisfiesTheShippedRBAC(t *testing.T) {
	cat, diags := engine.LoadPaths(engine.NewRegistry(), filepath.Join("..", "..", "..", "runbooks", "rbac.yaml"))
	if len(diags) > 0 || cat.RBAC == nil {
		t.Fatalf("runbooks/rbac.yaml: %v", diags)
	}
	h := start(t, Options{})
	demo := h.srv.SeedDemo()

	// Every handle the shipped config names exists in the playground.
	for _, g := range cat.RBAC.Groups {
		for _, handle := range g.SlackUserGroups {
			if demo.Groups[handle] == "" {
				t.Errorf("rbac.yaml group %s names Slack user group @%s, which the playground does not have", g.Name, handle)
			}
		}
	}

	auth := commands.NewAuthorizer(cat.RBAC, commands.Directories{commands.PlatformSlack: slackDirectory{h.api}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := auth.Refresh(ctx); err != nil {
		t.Fatalf("resolving the shipped RBAC groups against the playground: %v", err)
	}

	approve := func(role string) func(string) (bool, error) {
		return func(u string) (bool, error) {
			return auth.Satisfies(ctx, u, engine.ApproverRef{Type: "role", Value: role})
		}
	}
	allowed := func(perm string) func(string) (bool, error) {
		return func(u string) (bool, error) { return auth.Allowed(ctx, u, perm) }
	}
	bypass := func(u string) (bool, error) {
		return auth.CanBypass(ctx, u, []engine.Permission{{Role: "sre-lead"}})
	}
	for _, tc := range []struct {
		what  string
		check func(user string) (bool, error)
		who   map[string]bool // user name → allowed
	}{
		{"read history", allowed("executions:read"), map[string]bool{"alice": true, "bob": true, "carol": true}},
		{"run runbooks", allowed("runbooks:execute"), map[string]bool{"alice": true, "bob": true, "carol": true}},
		{"approve as oncall-primary", approve("oncall-primary"), map[string]bool{"alice": true, "bob": true, "carol": false}},
		{"approve as platform-team", approve("platform-team"), map[string]bool{"alice": false, "bob": true, "carol": false}},
		{"bypass as sre-lead", bypass, map[string]bool{"alice": false, "bob": false, "carol": true}},
		{"manage RBAC", allowed("rbac:manage"), map[string]bool{"alice": false, "bob": false, "carol": true}},
		{"edit runbooks", allowed("runbooks:update"), map[string]bool{"alice": false, "bob": true, "carol": true}},
	} {
		for name, want := range tc.who {
			got, err := tc.check(demo.Users[name])
			if err != nil || got != want {
				t.Errorf("%s may %s: %v (%v), want %v", name, tc.what, got, err, want)
			}
		}
	}
}
