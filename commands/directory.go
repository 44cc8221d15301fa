package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Chat platforms whose groups rbac.yaml can name.
const (
	PlatformSlack   = "slack"
	PlatformDiscord = "discord"
)

// Directory lists the members of one chat platform's groups: a Slack user
// group (by id or handle), a Discord role (by id). Members are the
// platform's own user ids.
type Directory interface {
	UserGroupMembers(ctx context.Context, group string) ([]string, error)
}

// Directories holds the Directory of each chat platform, by platform name
// (PlatformSlack, PlatformDiscord).
type Directories map[string]Directory

// ChatGroup is a group on a chat platform that rbac.yaml names: an entry of
// a group's slackUserGroups or discordRoles.
type ChatGroup struct {
	Platform string
	ID       string
}

// String names the group as users know it, e.g. "Slack user group `sre`".
func (g ChatGroup) String() string {
	switch g.Platform {
	case PlatformSlack:
		return "Slack user group `" + g.ID + "`"
	case PlatformDiscord:
		return "Discord role `" + g.ID + "`"
	}
	return g.Platform + " group `" + g.ID + "`"
}

// UserID is how rbac.yaml and the Authorizer spell a platform's user id:
// Slack ids stay bare ("U123"), other platforms' are qualified
// ("discord:123456").
func UserID(platform, id string) string {
	if platform == PlatformSlack || platform == "" {
		return id
	}
	return platform + ":" + id
}

// ErrNotResolved is why a chat group that has not been looked up yet
// grants nothing: Refresh has not run, or has not reached it.
var ErrNotResolved = errors.New("its members have not been fetched yet")

// GroupUnavailableError refuses something the user might be allowed to do
// through a chat group whose members could not be fetched. Its message is
// meant for the user.
type GroupUnavailableError struct {
	// Need is what was asked, e.g. "access to runbooks:execute".
	Need string
	// Group is the RBAC group (rbac.yaml groups[].name) that could grant it.
	Group string
	// ChatGroup is the chat-side group of Group that failed.
	ChatGroup ChatGroup
	// Err is why it failed.
	Err error
	// File is the RBAC config file that names the group.
	File string
}

func (e *GroupUnavailableError) Error() string {
	file := e.File
	if file == "" {
		file = "the RBAC config (rbac.yaml)"
	}
	return fmt.Sprintf("your %s depends on %s (RBAC group %s), which could not be resolved: %v; ask an admin to fix %s",
		e.Need, e.ChatGroup, e.Group, e.Err, file)
}

// Unwrap returns why the group could not be resolved.
func (e *GroupUnavailableError) Unwrap() error { return e.Err }

// groupState is what is known of a chat group's members.
type groupState struct {
	members map[string]bool // nil until a lookup has succeeded
	err     error           // the last lookup's failure; nil after a success
}

// lookupTimeout bounds one directory call, so one hung lookup cannot hold
// back the others.
const lookupTimeout = 30 * time.Second

// chatGroups lists the chat groups the config names, each once, in a
// stable order, with the RBAC groups that use each.
func (a *Authorizer) chatGroups() ([]ChatGroup, map[ChatGroup][]string) {
	users := map[ChatGroup][]string{}
	var out []ChatGroup
	add := func(platform, id, group string) {
		cg := ChatGroup{Platform: platform, ID: id}
		if _, ok := users[cg]; !ok {
			out = append(out, cg)
		}
		users[cg] = append(users[cg], group)
	}
	if a.cfg != nil {
		for _, g := range a.cfg.Groups {
			for _, id := range g.SlackUserGroups {
				add(PlatformSlack, id, g.Name)
			}
			for _, id := range g.DiscordRoles {
				add(PlatformDiscord, id, g.Name)
			}
		}
	}
	return out, users
}

// Refresh fetches the members of every chat group the RBAC config names.
// A group that fails keeps the members it last had; one that never
// resolved grants nothing, and refusals that depend on it say so. Each
// failure is logged once at Warn when it starts or its reason changes, and
// a recovery at Info. Refresh returns the failures, joined.
func (a *Authorizer) Refresh(ctx context.Context) error {
	a.refreshMu.Lock()
	defer a.refreshMu.Unlock()
	groups, usedBy := a.chatGroups()
	var errs []error
	for _, cg := range groups {
		members, err := a.lookup(ctx, cg)
		if ctx.Err() != nil {
			return fmt.Errorf("refreshing RBAC groups: %w", ctx.Err())
		}
		a.mu.Lock()
		prev := a.groups[cg]
		next := groupState{members: members, err: err}
		if err != nil {
			next.members = prev.members // stale beats denying everyone on a blip
		}
		a.groups[cg] = next
		a.mu.Unlock()
		a.logChange(cg, usedBy[cg], prev, next)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (RBAC group %s): %w", cg, strings.Join(usedBy[cg], ", "), err))
		}
	}
	a.mu.Lock()
	a.refreshed = true
	a.mu.Unlock()
	return errors.Join(errs...)
}

func (a *Authorizer) lookup(ctx context.Context, cg ChatGroup) (map[string]bool, error) {
	dir := a.dirs[cg.Platform]
	if dir == nil {
		return nil, fmt.Errorf("the bot is not connected to %s", cg.Platform)
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	us, err := dir.UserGroupMembers(ctx, cg.ID)
	if err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(us))
	for _, u := range us {
		if u != "" {
			m[UserID(cg.Platform, u)] = true
		}
	}
	return m, nil
}

func (a *Authorizer) logChange(cg ChatGroup, usedBy []string, prev, next groupState) {
	attrs := []any{"platform", cg.Platform, "chat_group", cg.ID, "rbac_groups", strings.Join(usedBy, ",")}
	switch {
	case next.err != nil && (prev.err == nil || prev.err.Error() != next.err.Error()):
		if next.members != nil {
			attrs = append(attrs, "kept_members", len(next.members))
		} else {
			attrs = append(attrs, "effect", "grants nothing until it resolves")
		}
		a.log.Warn("RBAC: could not fetch the members of "+cg.String(), append(attrs, "err", next.err)...)
	case next.err == nil && prev.err != nil:
		a.log.Info("RBAC: "+cg.String()+" resolves again", append(attrs, "members", len(next.members))...)
	}
}

// Run refreshes chat group members every refresh interval (default five
// minutes) until ctx ends; it refreshes at once first if Refresh has not
// run yet. It returns at once when the config names no chat group.
func (a *Authorizer) Run(ctx context.Context) {
	if groups, _ := a.chatGroups(); len(groups) == 0 {
		return
	}
	a.mu.Lock()
	refreshed := a.refreshed
	a.mu.Unlock()
	if !refreshed {
		_ = a.Refresh(ctx) // failures are logged per group
	}
	for {
		t := a.clock.NewTimer(a.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		_ = a.Refresh(ctx)
	}
}

// discardLogger is the logger of an Authorizer given none.
var discardLogger = slog.New(slog.DiscardHandler)
