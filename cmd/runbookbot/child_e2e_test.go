package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/bot"
	slackbot "github.com/runbookbot/runbookbot/bot/slack"
	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/engine"
)

// serveChildEnv makes the test binary run `runbookbot serve` with the
// arguments in it (JSON): the real serve wiring in a process of its own,
// which tests kill with SIGKILL.
const serveChildEnv = "RUNBOOKBOT_SERVE_CHILD"

func TestMain(m *testing.M) {
	if raw := os.Getenv(serveChildEnv); raw != "" {
		var args []string
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			fmt.Fprintln(os.Stderr, "bad", serveChildEnv, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := run(ctx, append([]string{"serve"}, args...), os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// serveChild is a `runbookbot serve` process talking to the emulator.
type serveChild struct {
	t   testing.TB
	cmd *exec.Cmd
	log string
}

// startServe starts `runbookbot serve args...` against emu; its log goes to
// a file that is shown when the test fails.
func startServe(t testing.TB, emu *slackemu.Server, name string, env []string, args ...string) *serveChild {
	t.Helper()
	raw, _ := json.Marshal(args)
	logPath := filepath.Join(t.TempDir(), name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveChildEnv+"="+string(raw), "SLACK_BOT_TOKEN="+emu.BotToken(),
		"SLACK_APP_TOKEN="+emu.AppToken(), "SLACK_API_URL="+emu.APIURL())
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &serveChild{t: t, cmd: cmd, log: logPath}
	t.Cleanup(func() {
		c.kill()
		lf.Close()
		if t.Failed() || os.Getenv("RUNBOOKBOT_TEST_LOG") != "" {
			b, _ := os.ReadFile(logPath)
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("log of %s (tail):\n%s", name, b)
		}
	})
	return c
}

// kill ends the process with SIGKILL (no clean shutdown) and reaps it.
func (c *serveChild) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

func (c *serveChild) pid() int { return c.cmd.Process.Pid }

// waitEmu waits up to d for cond, re-checked on every emulator change.
func waitEmu(t testing.TB, emu *slackemu.Server, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := emu.WaitFor(ctx, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// blockKey is the id of a stored message's first block (the bot's key).
func blockKey(m slackemu.Message) string {
	var bs []struct {
		ID string `json:"block_id"`
	}
	if json.Unmarshal(m.Blocks, &bs) != nil || len(bs) == 0 {
		return ""
	}
	return bs[0].ID
}

// canonBlocks re-encodes Block Kit JSON so that two encodings compare.
func canonBlocks(raw []byte) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// threadProblems compares what the emulator shows for every execution in
// store with what the store says (the messages bot.RenderThread makes of
// its events, rendered for Slack): one parent per execution showing its
// final status and complete step list, one reply per step (unless the
// parent says replies were left out) equal to the step's final reply, one
// approval card per approval whose header matches and whose buttons are
// gone once it is decided, and no message posted twice.
func threadProblems(ctx context.Context, emu *slackemu.Server, store engine.Store, cat *engine.Catalog, channels ...string) ([]string, error) {
	rows, err := store.History(ctx, engine.HistoryQuery{Limit: 100000})
	if err != nil {
		return nil, err
	}
	byKey := map[string][]slackemu.Message{}
	for _, ch := range channels {
		for _, m := range emu.AllMessages(ch) {
			if k := blockKey(m); k != "" {
				byKey[k] = append(byKey[k], m)
			}
		}
	}
	var probs []string
	add := func(id, f string, a ...any) { probs = append(probs, id[:8]+": "+fmt.Sprintf(f, a...)) }
	for _, r := range rows {
		evs, err := store.Events(ctx, r.ExecutionID)
		if err != nil {
			return nil, err
		}
		total := 0
		if rb, err := cat.Lookup(r.RunbookName); err == nil {
			total = len(rb.Preconditions) + len(rb.Steps)
		}
		parent, steps, approvals := bot.RenderThread(evs, total, false, time.Time{})
		pk := parent.Blocks[0].ID
		ps := byKey[pk]
		if len(ps) != 1 {
			add(r.ExecutionID, "%d parent messages, want 1", len(ps))
			continue
		}
		got := blockTexts(ps[0].Blocks)
		want := blockTexts(mustJSON(slackbot.Blocks(parent)))
		for _, id := range []string{pk, "facts", "steps", "when"} {
			if id == "when" && strings.Contains(got[id], "left out") {
				continue
			}
			if got[id] != want[id] {
				add(r.ExecutionID, "parent block %s = %q, want %q", id, got[id], want[id])
			}
		}
		if !strings.HasPrefix(got["status"], firstLine(want["status"])) {
			add(r.ExecutionID, "parent status = %q, want %q", got["status"], want["status"])
		}
		if _, live := got["exec-actions"]; live != (r.Status != engine.StatusFinished) {
			add(r.ExecutionID, "parent has a cancel button: %v, finished: %v", live, r.Status == engine.StatusFinished)
		}
		leftOut := strings.Contains(got["when"], "left out")
		for _, s := range steps {
			ms := byKey[s.Blocks[0].ID]
			switch {
			case len(ms) == 0 && leftOut:
			case len(ms) != 1:
				add(r.ExecutionID, "%d replies for %s, want 1", len(ms), s.Blocks[0].ID)
			case canonBlocks(ms[0].Blocks) != canonBlocks(mustJSON(slackbot.Blocks(s))):
				add(r.ExecutionID, "reply %s = %s, want %s", s.Blocks[0].ID, ms[0].Blocks, mustJSON(slackbot.Blocks(s)))
			case ms[0].ThreadTS != ps[0].TS && ms[0].ThreadTS != r.Trigger.Thread:
				add(r.ExecutionID, "reply %s is not in the execution's thread", s.Blocks[0].ID)
			}
		}
		for _, a := range approvals {
			ms := byKey[a.Blocks[0].ID]
			if len(ms) != 1 {
				add(r.ExecutionID, "%d approval cards %s, want 1", len(ms), a.Blocks[0].ID)
				continue
			}
			got, want := blockTexts(ms[0].Blocks), blockTexts(mustJSON(slackbot.Blocks(a)))
			if got[a.Blocks[0].ID] != want[a.Blocks[0].ID] {
				add(r.ExecutionID, "approval card header %q, want %q", got[a.Blocks[0].ID], want[a.Blocks[0].ID])
			}
			_, gotButtons := got["#actions"]
			_, wantButtons := want["#actions"]
			if gotButtons != wantButtons {
				add(r.ExecutionID, "approval card %s has buttons: %v, want %v", a.Blocks[0].ID, gotButtons, wantButtons)
			}
		}
	}
	sort.Strings(probs)
	return probs, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// blockTexts maps each block's id to its text (header, section text and
// fields, context elements); an actions block also appears as "#actions".
func blockTexts(raw []byte) map[string]string {
	var bs []struct {
		Type string `json:"type"`
		ID   string `json:"block_id"`
		Text *struct {
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Text string `json:"text"`
		} `json:"fields"`
		Elements []struct {
			Text string `json:"text"`
		} `json:"elements"`
	}
	_ = json.Unmarshal(raw, &bs)
	out := map[string]string{}
	for _, b := range bs {
		var parts []string
		if b.Text != nil {
			parts = append(parts, b.Text.Text)
		}
		for _, f := range b.Fields {
			parts = append(parts, f.Text)
		}
		for _, e := range b.Elements {
			parts = append(parts, e.Text)
		}
		out[b.ID] = strings.Join(parts, "|")
		if b.Type == "actions" {
			out["#actions"] = out[b.ID]
		}
	}
	return out
}
