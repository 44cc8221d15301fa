package commands

import (
	"fmt"
	"sort"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// Every name a shipped runbook gives to people — approver roles, teams and
// groups, override permission roles and groups, escalation targets — is
// defined by the shipped rbac.yaml, as a group or a role. Otherwise the
// approval waits for nobody and the bypass works for nobody (the seed says
// sre-lead; rbac.yaml once said sre-leads).
func TestShippedRunbooksNameOnlyDefinedRBACGroupsAndRoles(t *testing.T) {
	cat, diags := engine.LoadPaths(enginetest.NewCluster().Registry(), "../runbooks")
	if len(diags) > 0 {
		t.Fatalf("runbooks/ does not load, so its names cannot be checked:\n%v", diags)
	}
	if cat.RBAC == nil {
		t.Fatal("runbooks/ has no RBAC config")
	}
	if len(cat.Runbooks) == 0 {
		t.Fatal("runbooks/ has no runbooks")
	}
	defined := map[string]bool{}
	for _, g := range cat.RBAC.Groups {
		defined[g.Name] = true
	}
	for _, r := range cat.RBAC.Roles {
		defined[r.Name] = true
	}

	used := map[string][]string{} // name -> where
	use := func(name, where string) {
		if name != "" {
			used[name] = append(used[name], where)
		}
	}
	for _, rb := range cat.Runbooks {
		for _, ap := range rb.Approvals {
			at := fmt.Sprintf("%s: approval %s", rb.File, ap.Name)
			if wf := ap.Workflow; wf != nil {
				for _, ref := range wf.Approvers {
					switch ref.Type {
					case "role", "team", "group":
						use(ref.Value, at+" approvers ("+ref.Type+")")
					}
				}
				for _, esc := range wf.Escalation {
					for _, n := range esc.Notify {
						use(n, at+" escalation notify")
					}
				}
			}
			for _, p := range ap.Permissions {
				use(p.Role, at+" permissions (role)")
				use(p.Group, at+" permissions (group)")
			}
		}
	}
	if len(used) == 0 {
		t.Fatal("no shipped runbook names an approver, override or escalation target; the check checks nothing")
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !defined[n] {
			t.Errorf("%q is not a group or role in %s, but is named by %v", n, cat.RBAC.File, used[n])
		}
	}

	// Groups given roles must say who is in them.
	groups := map[string]engine.Group{}
	for _, g := range cat.RBAC.Groups {
		groups[g.Name] = g
	}
	for _, as := range cat.RBAC.Assignments {
		for _, s := range as.Subjects {
			if s.Group == "" {
				continue
			}
			g, ok := groups[s.Group]
			if !ok {
				t.Errorf("role %s is assigned to group %q, which %s does not define under groups:", as.Role, s.Group, cat.RBAC.File)
			} else if len(g.Users)+len(g.SlackUserGroups)+len(g.DiscordRoles) == 0 {
				t.Errorf("group %q in %s has no users, Slack user groups or Discord roles", s.Group, cat.RBAC.File)
			}
		}
	}
}
