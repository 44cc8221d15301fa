package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkAlertStormAnswer posts 100 distinct alerts at once (far more
// than the channel allows replies, at Slack's real limits) and measures how
// long the first answer takes: the grouped storm message, before the
// threads that fill in as the budget allows.
func BenchmarkAlertStormAnswer(b *testing.B) {
	dir := b.TempDir()
	mf := dir + "/mappings.yaml"
	if err := os.WriteFile(mf, []byte(alertMappings), 0o644); err != nil {
		b.Fatal(err)
	}
	var answers []float64
	rateLimited := 0
	for i := 0; i < b.N; i++ {
		// A fresh bot and channel each time: a storm still filling its
		// threads (100 s at 1 post/s) would absorb the next one.
		b.StopTimer()
		h := newE2E(b, false, mf)
		alertsCh := h.emu.AddChannel("alerts")
		h.stop()
		h.opts.listen = "127.0.0.1:0"
		h.start()
		url := "http://" + h.rb.addr + "/alertmanager"
		b.StartTimer()
		var group []map[string]string
		for k := 0; k < 100; k++ {
			group = append(group, map[string]string{"alertname": "CheckoutSlow", "service": fmt.Sprintf("storm%d-%03d", i, k), "environment": "staging"})
		}
		tag := fmt.Sprintf("storm%d-", i)
		start := time.Now()
		resp, err := http.Post(url, "application/json", bytes.NewReader(webhookGroup(group...)))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = h.emu.WaitFor(ctx, func() bool {
			for _, m := range h.emu.Messages(alertsCh) {
				if strings.Contains(body(m), "Alert storm") && strings.Contains(body(m), tag) {
					return true
				}
			}
			return false
		})
		cancel()
		if err != nil {
			for _, m := range h.emu.Messages(alertsCh) {
				b.Log(body(m)[:min(200, len(body(m)))])
			}
			b.Fatalf("no storm message: %v", err)
		}
		answers = append(answers, float64(time.Since(start).Microseconds())/1000)
		rateLimited += h.emu.RateLimited()
		b.StopTimer()
		h.stop()
		b.StartTimer()
	}
	sort.Float64s(answers)
	b.ReportMetric(answers[len(answers)-1], "storm-answer-max-ms")
	b.ReportMetric(float64(rateLimited), "429s")
}
