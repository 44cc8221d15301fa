package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/redis"
	"github.com/runbookbot/runbookbot/test/redistest"
)

const pacedRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: paced, version: "1.0.0"}
parameters:
  - {name: tag, type: string, required: true}
steps:
  - {name: first, type: log, action: print, params: {message: "first {{ tag }}"}}
  - {name: pause, type: wait, action: sleep, params: {duration: 8s}}
  - {name: last, type: log, action: print, params: {message: "last {{ tag }}"}}
`

// Two `runbookbot serve` replicas share one redis-server and one Slack
// workspace (the emulator, with Slack's limits). One replica at a time
// shows the log: every execution gets one parent and one reply per step,
// whichever replica ran it. The showing replica is killed with SIGKILL
// while executions are half way; the other takes the chat view (and the
// dead one's executions) over and finishes every thread, posting nothing
// twice.
func TestChatReplicasShowEachThreadOnce(t *testing.T) {
	srv := redistest.Start(t)
	emu := slackemu.New(slackemu.Options{BotToken: "xoxb-test", AppToken: "xapp-test"})
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	alice := emu.AddUser(slackemu.User{Name: "alice"})
	ops := emu.AddChannel("ops")
	emu.AddChannel("incidents")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "paced.yaml"), []byte(pacedRunbook), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"RUNBOOKBOT_LEASE_TTL=2s"}
	args := []string{"--runbooks", dir, "--store", srv.URL(), "--no-rbac"}
	replicas := map[int]*serveChild{}
	for i, name := range []string{"a", "b"} {
		c := startServe(t, emu, "replica-"+name, env, args...)
		replicas[c.pid()] = c
		waitEmu(t, emu, 30*time.Second, "replica "+name+" connected", func() bool { return emu.Connections() >= i+1 })
	}
	ctx := context.Background()
	store, err := redis.NewStore(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	views := redis.NewChatViews(store)

	const runs = 8
	for i := 0; i < runs; i++ {
		if err := emu.SlashCommand(alice, ops, fmt.Sprintf("run paced tag=r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitEmu(t, emu, 30*time.Second, "every parent", func() bool { return execParents(emu, ops) >= runs })
	leader, err := views.Leader(ctx)
	if err != nil || leader == "" {
		t.Fatalf("no replica holds the view lease: %q, %v", leader, err)
	}
	victim := replicas[ownerPID(leader)]
	if victim == nil {
		t.Fatalf("the view lease is held by %q, not one of the replicas", leader)
	}
	rows, err := store.History(ctx, engine.HistoryQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	unfinished := 0
	for _, r := range rows {
		if r.Status != engine.StatusFinished {
			unfinished++
		}
	}
	if unfinished == 0 {
		t.Fatal("every execution finished before the kill; the test needs some half way")
	}
	victim.kill()

	reg := buildRegistry(registryOptions{})
	cat, diags := engine.LoadPaths(reg, dir)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	var probs []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		rows, err := store.History(ctx, engine.HistoryQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		done := len(rows) == runs
		for _, r := range rows {
			done = done && r.Status == engine.StatusFinished
		}
		if done {
			if probs, err = threadProblems(ctx, emu, store, cat, ops); err != nil {
				t.Fatal(err)
			}
			if len(probs) == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads never converged after the showing replica died (%d unfinished before the kill):\n%s", unfinished, strings.Join(probs, "\n"))
		}
		ch := emu.Changed()
		select {
		case <-ch:
		case <-time.After(500 * time.Millisecond): // the store changes without the emulator knowing
		}
	}
	if now, _ := views.Leader(ctx); now == leader || now == "" {
		t.Errorf("view lease after the kill held by %q (the dead replica was %q)", now, leader)
	}
	if n := emu.RateLimited(); n != 0 {
		t.Errorf("%d calls answered 429: the replicas spent one channel's budget twice", n)
	}
}

// execParents counts root messages that are execution parents.
func execParents(emu *slackemu.Server, ch string) int {
	n := 0
	for _, m := range emu.Messages(ch) {
		if strings.HasPrefix(blockKey(m), "exec:") {
			n++
		}
	}
	return n
}

// ownerPID reads the pid out of a replica's owner name (host-pid-random).
func ownerPID(owner string) int {
	parts := strings.Split(owner, "-")
	if len(parts) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(parts[len(parts)-2])
	return n
}
