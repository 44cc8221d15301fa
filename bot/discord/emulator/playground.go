package emulator

import (
	"context"
	"encoding/json"
	"strings"
)

// Run creates and starts a Server and closes it when ctx is done. It is all
// another package (e.g. a "dev" playground command) needs:
//
//	srv, err := discordemu.Run(ctx, discordemu.Options{Addr: "127.0.0.1:3001"})
//	demo := srv.SeedDemo()
//	// point the bot at srv.URL() with "Bot "+srv.Token(), register its
//	// commands in srv.GuildID(), point Alertmanager's discord_configs at
//	// demo.AlertWebhook, open srv.URL() in a browser.
func Run(ctx context.Context, o Options) (*Server, error) {
	s := New(o)
	if err := s.Start(); err != nil {
		return nil, err
	}
	go func() {
		<-ctx.Done()
		_ = s.Close()
	}()
	return s, nil
}

// Demo lists what SeedDemo created.
type Demo struct {
	Users        map[string]string // username → ID: alice, bob, carol
	Roles        map[string]string // name → ID: oncall, sre
	Channels     map[string]string // name → ID: ops, alerts, incidents
	AlertWebhook string            // incoming webhook URL posting into #alerts
}

// SeedDemo adds a small guild for the playground: users alice, bob and
// carol, roles oncall (alice, bob) and sre (all three), channels #ops,
// #alerts and #incidents, and an incoming webhook "Alertmanager" into
// #alerts. Call it after Start (the webhook URL needs the server's URL).
func (s *Server) SeedDemo() Demo {
	d := Demo{Users: map[string]string{}, Roles: map[string]string{}, Channels: map[string]string{}}
	for _, u := range []User{
		{Username: "alice", GlobalName: "Alice Admin"},
		{Username: "bob", GlobalName: "Bob Builder"},
		{Username: "carol", GlobalName: "Carol Oncall"},
	} {
		d.Users[u.Username] = s.AddUser(u)
	}
	d.Roles["oncall"] = s.AddRole(Role{Name: "oncall", Mentionable: true, Members: []string{d.Users["alice"], d.Users["bob"]}})
	d.Roles["sre"] = s.AddRole(Role{Name: "sre", Mentionable: true, Members: []string{d.Users["alice"], d.Users["bob"], d.Users["carol"]}})
	for _, c := range []string{"ops", "alerts", "incidents"} {
		d.Channels[c] = s.AddChannel(c)
	}
	hook, _ := s.AddWebhook("alerts", "Alertmanager")
	d.AlertWebhook = hook.URL
	return d
}

// parseLabels turns "env=prod service=web" into a label map.
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[k] = v
		}
	}
	return out
}

// Snapshot returns the whole playground state as JSON (users, channels
// with messages and threads, ephemerals, modals, interactions, counters),
// e.g. to attach to a failing test's log.
func (s *Server) Snapshot() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return mustJSON(s.uiStateLocked())
}
