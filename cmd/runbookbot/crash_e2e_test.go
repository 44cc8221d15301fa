package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/embedded"
)

const gatedRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: gated, version: "1.0.0"}
parameters:
  - {name: tag, type: string, required: true}
steps:
  - {name: first, type: log, action: print, params: {message: "first {{ tag }}"}}
  - name: change
    type: log
    action: print
    params: {message: "change {{ tag }}"}
    requiresApproval: {type: manual}
  - {name: pause, type: wait, action: sleep, params: {duration: 1s}}
  - {name: last, type: log, action: print, params: {message: "last {{ tag }}"}}
`

// The serve process is killed with SIGKILL at random moments while its
// outbox holds queued posts and edits (commands arrive faster than the
// channel's budget, approvals are clicked), and restarted on the same data
// directory each time. Once every execution has finished, every thread
// equals what the store says: one parent with the outcome and the complete
// step list, each step's final reply once, each approval card once with
// its buttons gone. The emulator (Slack) lives in the test process and
// outlives every bot process.
func TestChatConvergesAfterKills(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RUNBOOKBOT_CRASH_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (RUNBOOKBOT_CRASH_SEED replays it)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	emu := slackemu.New(slackemu.Options{BotToken: "xoxb-test", AppToken: "xapp-test"})
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	alice := emu.AddUser(slackemu.User{Name: "alice"})
	bob := emu.AddUser(slackemu.User{Name: "bob"})
	ops := emu.AddChannel("ops")
	incidents := emu.AddChannel("incidents")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gated.yaml"), []byte(gatedRunbook), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--runbooks", dir, "--data-dir", data, "--no-rbac"}

	// approveAll clicks Approve on every card that still has buttons.
	approveAll := func() int {
		n := 0
		for _, m := range emu.Messages(incidents) {
			if id := buttonID(m, "approval:approve:"); id != "" {
				if emu.ClickButton(bob, incidents, m.TS, id) == nil {
					n++
				}
			}
		}
		return n
	}
	reg := buildRegistry(registryOptions{})
	cat, diags := engine.LoadPaths(reg, dir)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	const kills = 6
	runs, lagging := 0, 0
	for k := 0; k < kills; k++ {
		c := startServe(t, emu, fmt.Sprintf("serve-%d", k), nil, args...)
		waitEmu(t, emu, 30*time.Second, "the bot connected", func() bool { return emu.Connections() == 1 })
		for i := 0; i < 2+rng.IntN(4); i++ {
			if err := emu.SlashCommand(alice, ops, fmt.Sprintf("run gated tag=k%d-%d", k, i)); err != nil {
				t.Fatal(err)
			}
			runs++
		}
		approveAll()
		time.Sleep(time.Duration(rng.IntN(2500)) * time.Millisecond) // a random moment to kill at, not a wait for anything
		c.kill()
		waitEmu(t, emu, 10*time.Second, "the bot gone", func() bool { return emu.Connections() == 0 })
		probs, err := withStore(data, func(s engine.Store) ([]string, error) {
			return threadProblems(context.Background(), emu, s, cat, ops, incidents)
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(probs) > 0 {
			lagging++
		}
	}
	if lagging == 0 {
		t.Fatal("chat showed the store's state at every kill: nothing was queued, so the restarts proved nothing")
	}
	t.Logf("chat lagged the store at %d of %d kills", lagging, kills)
	c := startServe(t, emu, "serve-final", nil, args...)
	defer c.kill()
	waitEmu(t, emu, 30*time.Second, "the bot connected", func() bool { return emu.Connections() == 1 })
	restarted := time.Now()
	var probs []string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		approveAll()
		rows, err := readHistory(data)
		if err != nil {
			t.Fatal(err)
		}
		done := len(rows) > 0
		for _, r := range rows {
			done = done && r.Status == engine.StatusFinished
		}
		if done {
			probs, err = withStore(data, func(s engine.Store) ([]string, error) {
				return threadProblems(context.Background(), emu, s, cat, ops, incidents)
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(probs) == 0 {
				t.Logf("%d commands sent, %d executions in the store, all shown %s after the last restart", runs, len(rows), time.Since(restarted).Round(time.Second))
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d kills the threads never converged to the store (%d executions):\n%s", kills, len(rows), strings.Join(probs, "\n"))
		}
		ch := emu.Changed()
		select {
		case <-ch:
		case <-time.After(time.Second): // executions progress in the bot's store, unseen by the emulator
		}
	}
}

// buttonID returns the action_id of m's first button starting with prefix.
func buttonID(m slackemu.Message, prefix string) string {
	s := string(m.Blocks)
	i := strings.Index(s, `"action_id":"`+prefix)
	if i < 0 {
		return ""
	}
	rest := s[i+len(`"action_id":"`):]
	return rest[:strings.IndexByte(rest, '"')]
}

// withStore reads a snapshot of the embedded store a running bot writes.
func withStore[T any](dir string, f func(engine.Store) (T, error)) (T, error) {
	s, err := embedded.OpenReadOnly(dir)
	if err != nil {
		var zero T
		return zero, err
	}
	defer s.Close()
	return f(s)
}

func readHistory(dir string) ([]engine.Summary, error) {
	return withStore(dir, func(s engine.Store) ([]engine.Summary, error) {
		return s.History(context.Background(), engine.HistoryQuery{Limit: 100000})
	})
}
