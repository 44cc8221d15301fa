package commands

import (
	"context"
	"log/slog"
	"slices"
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

// Authorizer answers who may do what from the RBAC config. Users are
// named in groups directly, or through chat groups (Slack user groups,
// Discord roles) whose members Refresh fetches at start and Run keeps
// fresh; a check never waits on a chat platform. A nil config allows
// everything (local development). An empty or unknown user holds nothing.
// It implements engine.Approvers.
type Authorizer struct {
	cfg      *engine.RBACConfig
	dirs     Directories
	clock    engine.Clock
	interval time.Duration
	log      *slog.Logger

	refreshMu sync.Mutex // one Refresh at a time, so changes are logged once
	mu        sync.Mutex
	groups    map[ChatGroup]groupState
	refreshed bool
}

var _ engine.Approvers = (*Authorizer)(nil)

// Option configures an Authorizer.
type Option func(*Authorizer)

// WithClock sets the clock Run waits on (default: the wall clock).
func WithClock(c engine.Clock) Option { return func(a *Authorizer) { a.clock = c } }

// WithRefreshInterval sets how often Run fetches chat group members again
// (default five minutes).
func WithRefreshInterval(d time.Duration) Option {
	return func(a *Authorizer) {
		if d > 0 {
			a.interval = d
		}
	}
}

// WithLogger sets where failures to fetch chat groups are reported.
func WithLogger(l *slog.Logger) Option { return func(a *Authorizer) { a.log = l } }

// DefaultRefreshInterval is how often Run fetches chat group members.
const DefaultRefreshInterval = 5 * time.Minute

// NewAuthorizer returns an authorizer for cfg, fetching chat groups from
// dirs (nil when the config names none). Call Refresh before serving, and
// Run to keep memberships fresh.
func NewAuthorizer(cfg *engine.RBACConfig, dirs Directories, opts ...Option) *Authorizer {
	a := &Authorizer{cfg: cfg, dirs: dirs, clock: engine.SystemClock{}, interval: DefaultRefreshInterval,
		log: discardLogger, groups: map[ChatGroup]groupState{}}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Enabled reports whether RBAC is configured.
func (a *Authorizer) Enabled() bool { return a != nil && a.cfg != nil }

// access is what the config grants one user from what could be resolved,
// and what chat groups that could not be resolved might add.
type access struct {
	groups, roles, perms                map[string]bool
	maybeGroups, maybeRoles, maybePerms map[string]*GroupUnavailableError
}

// verdict of one check: yes, or no, or no because of maybe.
type verdict struct {
	yes   bool
	maybe *GroupUnavailableError
}

func (v verdict) result(need string) (bool, error) {
	if v.yes || v.maybe == nil {
		return v.yes, nil
	}
	e := *v.maybe
	e.Need = need
	return false, &e
}

func (a *Authorizer) access(user string) access {
	ac := access{groups: map[string]bool{}, roles: map[string]bool{}, perms: map[string]bool{},
		maybeGroups: map[string]*GroupUnavailableError{}, maybeRoles: map[string]*GroupUnavailableError{},
		maybePerms: map[string]*GroupUnavailableError{}}
	if a.cfg == nil || strings.TrimSpace(user) == "" {
		return ac
	}
	a.mu.Lock()
	for _, g := range a.cfg.Groups {
		if g.Name == "" || ac.groups[g.Name] {
			continue
		}
		if slices.Contains(g.Users, user) {
			ac.groups[g.Name] = true
			continue
		}
		chat := make([]ChatGroup, 0, len(g.SlackUserGroups)+len(g.DiscordRoles))
		for _, id := range g.SlackUserGroups {
			chat = append(chat, ChatGroup{PlatformSlack, id})
		}
		for _, id := range g.DiscordRoles {
			chat = append(chat, ChatGroup{PlatformDiscord, id})
		}
		for _, cg := range chat {
			st := a.groups[cg]
			if st.members[user] {
				ac.groups[g.Name] = true
				break
			}
			if st.members == nil && ac.maybeGroups[g.Name] == nil {
				why := st.err
				if why == nil {
					why = ErrNotResolved
				}
				ac.maybeGroups[g.Name] = &GroupUnavailableError{Group: g.Name, ChatGroup: cg, Err: why, File: a.cfg.File}
			}
		}
	}
	a.mu.Unlock()
	for g := range ac.groups {
		delete(ac.maybeGroups, g)
	}
	for _, as := range a.cfg.Assignments {
		for _, s := range as.Subjects {
			switch {
			case s.User != "" && s.User == user, s.Group != "" && ac.groups[s.Group]:
				ac.roles[as.Role] = true
			case s.Group != "" && ac.maybeGroups[s.Group] != nil && ac.maybeRoles[as.Role] == nil:
				ac.maybeRoles[as.Role] = ac.maybeGroups[s.Group]
			}
		}
	}
	for r := range ac.roles {
		delete(ac.maybeRoles, r)
		for _, p := range a.rolePermissions(r) {
			ac.perms[p] = true
		}
	}
	for _, r := range sortedKeys(ac.maybeRoles) {
		for _, p := range a.rolePermissions(r) {
			if !ac.perms[p] && ac.maybePerms[p] == nil {
				ac.maybePerms[p] = ac.maybeRoles[r]
			}
		}
	}
	return ac
}

// rolePermissions lists role's permissions with those it inherits.
func (a *Authorizer) rolePermissions(role string) []string {
	var out []string
	seen := map[string]bool{}
	for name := role; name != "" && !seen[name]; {
		seen[name] = true
		next := ""
		for _, r := range a.cfg.Roles {
			if r.Name == name {
				out = append(out, r.Permissions...)
				next = r.Inherits
			}
		}
		name = next
	}
	return out
}

func (ac access) permission(perm string) verdict {
	if ac.perms[perm] || ac.perms["*"] {
		return verdict{yes: true}
	}
	if e := ac.maybePerms[perm]; e != nil {
		return verdict{maybe: e}
	}
	return verdict{maybe: ac.maybePerms["*"]}
}

// member reports whether the user is in the RBAC group or holds the role
// called name.
func (ac access) member(name string) verdict {
	if ac.groups[name] || ac.roles[name] {
		return verdict{yes: true}
	}
	if e := ac.maybeGroups[name]; e != nil {
		return verdict{maybe: e}
	}
	return verdict{maybe: ac.maybeRoles[name]}
}

// approverAs reports whether the user may approve as name: they can
// respond to approvals and are in the group or hold the role name.
func (ac access) approverAs(name string) verdict {
	approve, member := ac.permission(PermApprove), ac.member(name)
	switch {
	case approve.yes && member.yes:
		return verdict{yes: true}
	case !approve.yes && approve.maybe == nil, !member.yes && member.maybe == nil:
		return verdict{}
	case !approve.yes:
		return approve
	}
	return member
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// InGroup reports whether user belongs to a group of the RBAC config,
// listed by id or through a chat group. When a chat group of it could not
// be fetched, it answers false with a *GroupUnavailableError.
func (a *Authorizer) InGroup(_ context.Context, user, group string) (bool, error) {
	return a.access(user).member(group).result("membership of " + group)
}

// Roles returns the RBAC roles assigned to user (not those they inherit).
// Roles that only a chat group that could not be fetched would grant are
// not included.
func (a *Authorizer) Roles(_ context.Context, user string) ([]string, error) {
	return sortedKeys(a.access(user).roles), nil
}

// Permissions returns the permissions user holds.
func (a *Authorizer) Permissions(_ context.Context, user string) (map[string]bool, error) {
	return a.access(user).perms, nil
}

// Allowed reports whether user holds perm. Without RBAC everything is
// allowed. When only a chat group that could not be fetched could grant
// perm, it answers false with a *GroupUnavailableError saying so.
func (a *Authorizer) Allowed(_ context.Context, user, perm string) (bool, error) {
	if !a.Enabled() {
		return true, nil
	}
	return a.access(user).permission(perm).result("access to " + perm)
}

// Satisfies implements engine.Approvers: a role or team or group named by a
// workflow is matched against RBAC roles and groups (and needs
// approvals:respond); "permission" refs against permissions; "user" refs
// against the user id.
func (a *Authorizer) Satisfies(_ context.Context, user string, ref engine.ApproverRef) (bool, error) {
	if !a.Enabled() {
		return true, nil
	}
	if strings.TrimSpace(user) == "" {
		return false, nil
	}
	switch ref.Type {
	case "user":
		return ref.Value == user, nil
	case "permission":
		return a.access(user).permission(ref.Value).result("access to " + ref.Value)
	}
	return a.access(user).approverAs(ref.Value).result("right to approve as " + ref.Value)
}

// CanBypass implements engine.Approvers for emergency overrides: user is
// named by one of perms, in its group, or approves as its role.
func (a *Authorizer) CanBypass(_ context.Context, user string, perms []engine.Permission) (bool, error) {
	if !a.Enabled() {
		return true, nil
	}
	if strings.TrimSpace(user) == "" {
		return false, nil
	}
	ac := a.access(user)
	var maybe verdict
	for _, p := range perms {
		var v verdict
		switch {
		case p.User != "":
			v.yes = p.User == user
		case p.Group != "":
			v = ac.member(p.Group)
		case p.Role != "":
			v = ac.approverAs(p.Role)
		}
		if v.yes {
			return true, nil
		}
		if maybe.maybe == nil {
			maybe = v
		}
	}
	return maybe.result("right to bypass approval")
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
