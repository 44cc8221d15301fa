package commands

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Permissions the bot checks.
const (
	PermList     = "runbooks:list"
	PermRead     = "runbooks:read"
	PermExecute  = "runbooks:execute"
	PermDryRun   = "runbooks:dry-run"
	PermHistory  = "executions:list"
	PermStatus   = "executions:read"
	PermApprove  = "approvals:respond"
	PermCancel   = "executions:cancel"
	PermAuditLog = "audit-logs:read"
)

// Directory answers chat-side group membership: the members of a chat user
// group (Slack's usergroups.users.list).
type Directory interface {
	UserGroupMembers(ctx context.Context, group string) ([]string, error)
}

// Authorizer answers who may do what from the RBAC config, resolving groups
// to chat users directly or through chat user groups (cached). A nil config
// allows everything (local development). It implements engine.Approvers.
type Authorizer struct {
	cfg *engine.RBACConfig
	dir Directory
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedMembers
}

type cachedMembers struct {
	users map[string]bool
	at    time.Time
}

var _ engine.Approvers = (*Authorizer)(nil)

// NewAuthorizer returns an authorizer. dir may be nil when no chat user
// groups are used.
func NewAuthorizer(cfg *engine.RBACConfig, dir Directory) *Authorizer {
	return &Authorizer{cfg: cfg, dir: dir, ttl: 5 * time.Minute, now: time.Now, cache: map[string]cachedMembers{}}
}

// Enabled reports whether RBAC is configured.
func (a *Authorizer) Enabled() bool { return a != nil && a.cfg != nil }

// InGroup reports whether user belongs to a group of the RBAC config (by
// user id, or through its chat user groups), or is the named user.
func (a *Authorizer) InGroup(ctx context.Context, user, group string) (bool, error) {
	if a.cfg == nil {
		return false, nil
	}
	for _, g := range a.cfg.Groups {
		if g.Name != group {
			continue
		}
		for _, u := range g.Users {
			if u == user {
				return true, nil
			}
		}
		for _, ug := range g.SlackUserGroups {
			m, err := a.members(ctx, ug)
			if err != nil {
				return false, err
			}
			if m[user] {
				return true, nil
			}
		}
	}
	return false, nil
}

func (a *Authorizer) members(ctx context.Context, group string) (map[string]bool, error) {
	a.mu.Lock()
	c, ok := a.cache[group]
	a.mu.Unlock()
	if ok && a.now().Sub(c.at) < a.ttl {
		return c.users, nil
	}
	if a.dir == nil {
		return nil, nil
	}
	us, err := a.dir.UserGroupMembers(ctx, group)
	if err != nil {
		if ok {
			return c.users, nil // stale beats failing closed on a blip
		}
		return nil, fmt.Errorf("resolving user group %s: %w", group, err)
	}
	m := make(map[string]bool, len(us))
	for _, u := range us {
		m[u] = true
	}
	a.mu.Lock()
	a.cache[group] = cachedMembers{users: m, at: a.now()}
	a.mu.Unlock()
	return m, nil
}

// Roles returns the RBAC roles user holds, with inherited roles.
func (a *Authorizer) Roles(ctx context.Context, user string) ([]string, error) {
	if a.cfg == nil {
		return nil, nil
	}
	held := map[string]bool{}
	for _, as := range a.cfg.Assignments {
		for _, s := range as.Subjects {
			ok := s.User == user
			if !ok && s.Group != "" {
				var err error
				if ok, err = a.InGroup(ctx, user, s.Group); err != nil {
					return nil, err
				}
			}
			if ok {
				held[as.Role] = true
			}
		}
	}
	out := make([]string, 0, len(held))
	for r := range held {
		out = append(out, r)
	}
	sort.Strings(out)
	return out, nil
}

// Permissions returns the permissions user holds.
func (a *Authorizer) Permissions(ctx context.Context, user string) (map[string]bool, error) {
	roles, err := a.Roles(ctx, user)
	if err != nil {
		return nil, err
	}
	byName := map[string]engine.Role{}
	for _, r := range a.cfg.Roles {
		byName[r.Name] = r
	}
	perms := map[string]bool{}
	for _, r := range roles {
		seen := map[string]bool{}
		for name := r; name != "" && !seen[name]; name = byName[name].Inherits {
			seen[name] = true
			for _, p := range byName[name].Permissions {
				perms[p] = true
			}
		}
	}
	return perms, nil
}

// Allowed reports whether user holds perm. Without RBAC everything is
// allowed.
func (a *Authorizer) Allowed(ctx context.Context, user, perm string) (bool, error) {
	if !a.Enabled() {
		return true, nil
	}
	perms, err := a.Permissions(ctx, user)
	if err != nil {
		return false, err
	}
	return perms[perm] || perms["*"], nil
}

// Satisfies implements engine.Approvers: a role or team or group named by a
// workflow is matched against RBAC roles and groups; "permission" refs
// against permissions; "user" refs against the user id.
func (a *Authorizer) Satisfies(ctx context.Context, user string, ref engine.ApproverRef) (bool, error) {
	if !a.Enabled() {
		return true, nil
	}
	switch ref.Type {
	case "user":
		return ref.Value == user, nil
	case "permission":
		return a.Allowed(ctx, user, ref.Value)
	}
	if ok, err := a.Allowed(ctx, user, PermApprove); err != nil || !ok {
		return false, err
	}
	if ok, err := a.InGroup(ctx, user, ref.Value); ok || err != nil {
		return ok, err
	}
	roles, err := a.Roles(ctx, user)
	if err != nil {
		return false, err
	}
	for _, r := range roles {
		if r == ref.Value {
			return true, nil
		}
	}
	return false, nil
}

// CanBypass implements engine.Approvers for emergency overrides.
func (a *Authorizer) CanBypass(ctx context.Context, user string, perms []engine.Permission) (bool, error) {
	if !a.Enabled() {
		return true, nil
	}
	for _, p := range perms {
		switch {
		case p.User != "" && p.User == user:
			return true, nil
		case p.Group != "":
			if ok, err := a.InGroup(ctx, user, p.Group); ok || err != nil {
				return ok, err
			}
		case p.Role != "":
			ok, err := a.Satisfies(ctx, user, engine.ApproverRef{Type: "role", Value: p.Role})
			if ok || err != nil {
				return ok, err
			}
		}
	}
	return false, nil
}

// Mentions turns escalation targets (group names) into chat mentions of
// their users and user groups; unknown names are kept as text.
func (a *Authorizer) Mentions(targets []string) []string {
	var out []string
	for _, t := range targets {
		found := false
		if a.cfg != nil {
			for _, g := range a.cfg.Groups {
				if g.Name != t {
					continue
				}
				found = true
				for _, u := range g.Users {
					out = append(out, "<@"+u+">")
				}
				for _, ug := range g.SlackUserGroups {
					out = append(out, "<!subteam^"+ug+">")
				}
			}
		}
		if !found {
			out = append(out, "@"+strings.TrimPrefix(t, "@"))
		}
	}
	return out
}
