package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/bot"
	slackemu "github.com/runbookbot/runbookbot/bot/slack/emulator"
	"github.com/runbookbot/runbookbot/engine"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkSlackAck sends 100 slash commands at once and reports how long
// the bot took to ack them (measured by the emulator, as Slack would).
func BenchmarkSlackAck(b *testing.B) {
	h := newE2E(b, false)
	for i := 0; i < b.N; i++ {
		before, botBefore := len(h.emu.AckLatencies()), len(h.rb.client.AckLatencies())
		var wg sync.WaitGroup
		for j := 0; j < 100; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := h.emu.SlashCommand(h.users["alice"], h.ops, "list"); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		h.waitFor("100 acks", func() bool { return len(h.emu.AckLatencies()) >= before+100 })
		lat := h.emu.AckLatencies()[before:]
		b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
		// The bot's own share: from reading the envelope to acking it.
		own := h.rb.client.AckLatencies()[botBefore:]
		b.ReportMetric(float64(percentile(own, 0.99).Microseconds())/1000, "bot-p99-ms")
	}
}

// BenchmarkSlackCallsPerExecution counts Web API calls for one execution of
// a 5-step runbook, from the slash command to the final edit.
func BenchmarkSlackCallsPerExecution(b *testing.B) {
	h := newE2E(b, false, "../../test/testdata/noop.yaml")
	methods := []string{"chat.postMessage", "chat.update", "chat.postEphemeral", "chat.getPermalink", "conversations.info"}
	count := func() int {
		n := 0
		for _, m := range methods {
			n += h.emu.Calls(m)
		}
		return n
	}
	total := 0
	for i := 0; i < b.N; i++ {
		before := count()
		h.slash("alice", h.ops, "run noop")
		h.message(h.ops, "a finished noop", func(m slackemu.Message) bool {
			return strings.Contains(body(m), "noop v1.0.0") && strings.Contains(body(m), "*Succeeded*") && m.Edits > 0 && !seen(m.TS)
		})
		if err := h.rb.bot.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		total += count() - before
	}
	b.ReportMetric(float64(total)/float64(b.N), "api-calls/execution")
}

var seenTS sync.Map

func seen(ts string) bool {
	_, loaded := seenTS.LoadOrStore(ts, true)
	return loaded
}

// BenchmarkSlackBurst starts 100 executions at once in 10 channels and
// reports how many calls the emulator answered with 429. Both the
// emulator's limits and the bot's pacing are scaled 10× faster than Slack's
// so the burst finishes in seconds; the ratio between them is Slack's.
func BenchmarkSlackBurst(b *testing.B) {
	h := newE2E(b, false, "../../test/testdata/noop.yaml")
	h.emu.SetLimit("chat.postMessage", slackemu.Limit{Burst: 5, Every: 100 * time.Millisecond, PerChannel: true})
	h.emu.SetLimit("chat.update", slackemu.Limit{Burst: 20, Every: 120 * time.Millisecond})
	h.stop()
	h.opts.limits = bot.Limits{PostBurst: 3, PostEvery: 110 * time.Millisecond, UpdateBurst: 10, UpdateEvery: 130 * time.Millisecond}
	h.start()
	var chans []string
	for c := 0; c < 10; c++ {
		chans = append(chans, h.emu.AddChannel(fmt.Sprintf("burst-%d", c)))
	}
	for i := 0; i < b.N; i++ {
		before := h.emu.RateLimited()
		start := time.Now()
		for j := 0; j < 100; j++ {
			h.slash("alice", chans[j%10], "run noop")
		}
		h.waitFor("100 finished executions", func() bool {
			n := 0
			for _, c := range chans {
				for _, m := range h.emu.Messages(c) {
					if strings.Contains(body(m), "*Succeeded*") {
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
	}
}

// BenchmarkAlertIngest sends 10,000 alerts (100 fingerprints, 100 repeats,
// in webhook notifications of 10) to the receiver, and reports alerts per
// minute ingested, the p99 time from an alert's first notification to the
// first message of its thread, and how many alerts were dropped. Emulator
// and bot limits are scaled 10× as in BenchmarkSlackBurst.
func BenchmarkAlertIngest(b *testing.B) {
	b.Run("burst", func(b *testing.B) { alertIngest(b, 100, 100, 0) })
	// 10,000 alerts a minute, a new fingerprint every 100 alerts (0.6 s):
	// the rate a channel's post limit can answer at once.
	b.Run("paced-10k-per-min", func(b *testing.B) { alertIngest(b, 20, 100, 6*time.Millisecond) })
}

func alertIngest(b *testing.B, fingerprints, repeats int, gap time.Duration) {
	dir := b.TempDir()
	mf := dir + "/mappings.yaml"

	if err := os.WriteFile(mf, []byte(alertMappings), 0o644); err != nil {
		b.Fatal(err)
	}
	h := newE2E(b, false, mf)
	alertsCh := h.emu.AddChannel("alerts")
	h.emu.SetLimit("chat.postMessage", slackemu.Limit{Burst: 5, Every: 100 * time.Millisecond, PerChannel: true})
	h.emu.SetLimit("chat.update", slackemu.Limit{Burst: 20, Every: 120 * time.Millisecond})
	h.stop()
	h.opts.listen = "127.0.0.1:0"
	h.opts.limits = bot.Limits{PostBurst: 3, PostEvery: 110 * time.Millisecond, UpdateBurst: 10, UpdateEvery: 130 * time.Millisecond}
	h.start()
	url := "http://" + h.rb.addr + "/alertmanager"
	for i := 0; i < b.N; i++ {
		first := map[string]time.Time{}
		dropped := 0
		start := time.Now()
		tick := time.NewTicker(max(gap*10, time.Microsecond))
		defer tick.Stop()
		for n := 0; n < fingerprints*repeats/10; n++ {
			if gap > 0 {
				<-tick.C // pacing the sender, not waiting on the bot
			}
			var group []map[string]string
			for k := 0; k < 10; k++ {
				idx := (n*10 + k) % fingerprints
				if gap > 0 {
					idx = (n * 10 / repeats) % fingerprints // new fingerprints spread through the stream
				}
				svc := fmt.Sprintf("b%d-%d-svc-%03d", i, fingerprints, idx)
				if _, ok := first[svc]; !ok {
					first[svc] = time.Now()
				}
				group = append(group, map[string]string{"alertname": "CheckoutDown", "service": svc, "environment": "staging"})
			}
			resp, err := http.Post(url, "application/json", bytes.NewReader(webhookGroup(group...)))
			if err != nil || resp.StatusCode != 200 {
				dropped += 10
			}
			if resp != nil {
				resp.Body.Close()
			}
		}
		h.waitFor("every notification handled", func() bool { return h.rb.bot.AlertBacklog() == 0 })
		ingest := time.Since(start)
		var lat []time.Duration
		h.waitFor("a thread for every fingerprint", func() bool {
			lat = lat[:0]
			for _, m := range h.emu.Messages(alertsCh) {
				for svc, t0 := range first {
					if strings.Contains(m.Text, "service="+svc) && !strings.Contains(m.Text, "service="+svc+"0") {
						lat = append(lat, tsTime(m.TS).Sub(t0))
					}
				}
			}
			return len(lat) >= fingerprints
		})
		b.ReportMetric(float64(fingerprints*repeats)/ingest.Minutes(), "alerts/min")
		b.ReportMetric(float64(percentile(lat, 0.99).Milliseconds()), "first-reply-p99-ms")
		b.ReportMetric(float64(dropped), "dropped")
	}
}

// tsTime turns a Slack ts into a time.
func tsTime(ts string) time.Time {
	var sec, usec int64
	fmt.Sscanf(ts, "%d.%d", &sec, &usec)
	return time.Unix(sec, usec*1000)
}

const steadyRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: steady, version: "1.0.0"}
parameters:
  - {name: tag, type: string, required: true}
steps:
  - {name: one, type: log, action: print, params: {message: "1"}}
  - {name: two, type: log, action: print, params: {message: "2"}}
  - {name: three, type: log, action: print, params: {message: "3"}}
  - {name: four, type: log, action: print, params: {message: "4"}}
  - {name: five, type: log, action: print, params: {message: "5"}}
`

// BenchmarkSlackSteadyLoad is the steady-load run against the
// emulator with Slack's real limits (not scaled): 0.5 new runs a second
// into one channel for 5 minutes, then 1 run a second for 60 seconds. It
// reports the p99 time from the command to the execution's parent message,
// the p99 time from an execution's end to its parent showing the outcome
// (steady and spike), and how many calls were answered 429.
// RUNBOOKBOT_STEADY_SCALE=0.1 shortens both phases tenfold.
func BenchmarkSlackSteadyLoad(b *testing.B) {
	scale := 1.0
	if s := os.Getenv("RUNBOOKBOT_STEADY_SCALE"); s != "" {
		fmt.Sscanf(s, "%g", &scale)
	}
	dir := b.TempDir()
	if err := os.WriteFile(dir+"/steady.yaml", []byte(steadyRunbook), 0o644); err != nil {
		b.Fatal(err)
	}
	h := newE2E(b, false, dir+"/steady.yaml")
	h.stop()
	h.opts.clock = engine.SystemClock{}
	h.start()
	for i := 0; i < b.N; i++ {
		var mu sync.Mutex
		sent := map[string]time.Time{}  // tag → command sent
		ended := map[string]time.Time{} // tag → execution finished
		shown := map[string]time.Time{} // tag → parent shows the outcome
		tagOf := map[string]string{}    // execution → tag
		phase := map[string]string{}    // tag → steady | spike
		unsub := h.rb.eng.Subscribe(func(e engine.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch e.Type {
			case engine.EventExecutionStarted:
				tagOf[e.ExecutionID] = fmt.Sprint(e.Parameters["tag"])
			case engine.EventExecutionFinished:
				ended[tagOf[e.ExecutionID]] = time.Now()
			}
		})
		before := h.emu.RateLimited()
		ctx, cancel := context.WithCancel(context.Background())
		watchDone := make(chan struct{})
		go func() { // watches the channel as a person would
			defer close(watchDone)
			for {
				ch := h.emu.Changed()
				now := time.Now()
				for _, m := range h.emu.Messages(h.ops) {
					bd := body(m)
					k := strings.Index(bd, "tag=b")
					if k < 0 || !strings.Contains(bd, "Succeeded") {
						continue
					}
					tag := bd[k+4:]
					tag = tag[:strings.IndexAny(tag, "`\" ")]
					mu.Lock()
					if _, ok := shown[tag]; !ok {
						shown[tag] = now
					}
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
					return
				case <-ch:
				}
			}
		}()
		run := func(name string, every time.Duration, d time.Duration) {
			t := time.NewTicker(every)
			defer t.Stop()
			for end := time.Now().Add(d); time.Now().Before(end); <-t.C {
				tag := fmt.Sprintf("b%d-%d", i, len(sent))
				mu.Lock()
				sent[tag], phase[tag] = time.Now(), name
				mu.Unlock()
				h.slash("alice", h.ops, "run steady tag="+tag)
			}
		}
		run("steady", 2*time.Second, time.Duration(scale*float64(5*time.Minute)))
		run("spike", time.Second, time.Duration(scale*float64(time.Minute)))
		h.waitFor("every parent showing its outcome", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(shown) >= len(sent)
		})
		cancel()
		<-watchDone
		unsub()
		var parent []time.Duration
		lag := map[string][]time.Duration{}
		for _, m := range h.emu.Messages(h.ops) {
			bd := body(m)
			if k := strings.Index(bd, "tag=b"); k >= 0 {
				tag := bd[k+4:]
				tag = tag[:strings.IndexAny(tag, "`\" ")]
				if t0, ok := sent[tag]; ok {
					parent = append(parent, tsTime(m.TS).Sub(t0))
				}
			}
		}
		for tag, t := range shown {
			if e, ok := ended[tag]; ok {
				lag[phase[tag]] = append(lag[phase[tag]], max(t.Sub(e), 0))
			}
		}
		b.ReportMetric(float64(percentile(parent, 0.99).Milliseconds()), "parent-p99-ms")
		b.ReportMetric(float64(percentile(lag["steady"], 0.99).Milliseconds()), "final-steady-p99-ms")
		b.ReportMetric(float64(percentile(lag["spike"], 0.99).Milliseconds()), "final-spike-p99-ms")
		b.ReportMetric(float64(h.emu.RateLimited()-before), "429s")
		b.ReportMetric(float64(h.rb.bot.Stats().Skipped), "step-replies-left-out")
	}
}
