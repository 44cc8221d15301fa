package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/bot"
	discordemu "github.com/runbookbot/runbookbot/bot/discord/emulator"
)

// BenchmarkDiscordAck sends 100 /runbook commands, one at a time and all
// at once, and reports how long the bot took to answer each interaction,
// as the emulator measures it on the wire (from writing INTERACTION_CREATE
// to the gateway to receiving the callback; Discord fails an interaction
// after 3s), and the bot's own share (from reading the event to the
// callback's return). The emulator runs in the same process, so under the
// burst it competes with the bot for the CPU.
func BenchmarkDiscordAck(b *testing.B) {
	h := newDiscordE2E(b, false)
	verbs := []string{"list", "help", "status", "describe name:example-echo"}
	run := func(b *testing.B, burst bool) {
		for i := 0; i < b.N; i++ {
			before, botBefore := len(h.emu.AckLatencies()), len(h.rb.discord.AckLatencies())
			var wg sync.WaitGroup
			for j := 0; j < 100; j++ {
				send := func() {
					if _, err := h.emu.RunCommand(h.users["alice"], h.ops, "/runbook "+verbs[j%4]); err != nil {
						b.Error(err)
					}
				}
				if burst {
					wg.Go(send)
					continue
				}
				send()
				h.waitFor("the ack", func() bool { return len(h.emu.AckLatencies()) >= before+j+1 })
			}
			wg.Wait()
			h.waitFor("100 acks", func() bool { return len(h.emu.AckLatencies()) >= before+100 })
			lat := h.emu.AckLatencies()[before:]
			b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			own := h.rb.discord.AckLatencies()[botBefore:]
			b.ReportMetric(float64(percentile(own, 0.99).Microseconds())/1000, "bot-p99-ms")
		}
	}
	b.Run("one-at-a-time", func(b *testing.B) { run(b, false) })
	b.Run("burst-100", func(b *testing.B) { run(b, true) })
	for _, in := range h.emu.Interactions() {
		if in.Failed {
			b.Errorf("interaction %s was not answered within 3s", in.ID)
		}
	}
}

// restCalls sums every REST call the emulator served.
func restCalls(emu *discordemu.Server) int {
	n := 0
	for _, c := range emu.CallCounts() {
		n += c
	}
	return n
}

// BenchmarkDiscordCallsPerExecution counts REST calls for one execution of
// a 5-step runbook, from the slash command (callback, removing the
// deferred answer) to the final edit: the parent, its thread, the step
// messages and their edits.
func BenchmarkDiscordCallsPerExecution(b *testing.B) {
	h := newDiscordE2E(b, false, "../../test/testdata/noop.yaml")
	total := 0
	for i := 0; i < b.N; i++ {
		before := restCalls(h.emu)
		h.cmd("alice", h.ops, "run name:noop")
		h.message(h.ops, "a finished noop", func(m discordemu.Message) bool {
			return strings.Contains(dtext(m), "noop v1.0.0") && strings.Contains(dtext(m), "**Succeeded**") && !seen("discord:"+m.ID)
		})
		if err := h.rb.bot.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		total += restCalls(h.emu) - before
	}
	b.ReportMetric(float64(total)/float64(b.N), "rest-calls/execution")
}

// BenchmarkDiscordBurst starts 100 executions at once in 10 channels and
// reports how many calls the emulator answered with 429. The emulator's
// buckets (Discord's: 5 messages, 5 edits, 5 threads per 5s per channel;
// 50 calls/s globally) and the bot's pacing are scaled 10× faster so the
// burst finishes in seconds; the ratio between them is Discord's.
func BenchmarkDiscordBurst(b *testing.B) {
	h := newDiscordE2E(b, false, "../../test/testdata/noop.yaml")
	fast := discordemu.Limit{Requests: 5, Window: 500 * time.Millisecond}
	for _, r := range []string{"POST /channels/{channel_id}/messages", "PATCH /channels/{channel_id}/messages/{message_id}",
		"POST /channels/{channel_id}/messages/{message_id}/threads"} {
		h.emu.SetLimit(r, fast)
	}
	h.emu.SetLimit("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original", discordemu.Limit{Requests: 5, Window: 200 * time.Millisecond})
	h.emu.SetGlobalLimit(discordemu.Limit{Requests: 500, Window: time.Second})
	h.stop()
	h.opts.discord.limits = bot.Limits{PostBurst: 2, PostEvery: 120 * time.Millisecond, UpdateBurst: 4, UpdateEvery: 110 * time.Millisecond,
		StepPatience: 500 * time.Millisecond}
	h.start()
	var chans []string
	for c := 0; c < 10; c++ {
		chans = append(chans, h.emu.AddChannel(fmt.Sprintf("burst-%d", c)))
	}
	for i := 0; i < b.N; i++ {
		before, calls := h.emu.RateLimited(), restCalls(h.emu)
		start := time.Now()
		for j := 0; j < 100; j++ {
			h.cmd("alice", chans[j%10], "run name:noop")
		}
		h.waitFor("100 finished executions", func() bool {
			n := 0
			for _, c := range chans {
				for _, m := range h.emu.Messages(c) {
					if strings.Contains(dtext(m), "**Succeeded**") {
						n++
					}
				}
			}
			return n >= 100*(i+1)
		})
		if err := h.rb.bot.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(h.emu.RateLimited()-before), "429s")
		b.ReportMetric(time.Since(start).Seconds(), "burst-seconds")
		b.ReportMetric(float64(restCalls(h.emu)-calls)/100, "rest-calls/execution")
	}
	for _, in := range h.emu.Interactions() {
		if in.Failed {
			b.Errorf("interaction %s was not answered within 3s", in.ID)
		}
	}
}
