// Package metrics exposes the bot's own Prometheus metrics: the seed
// article's runbook_* series, fed from the engine's event log, plus gauges
// the wiring adds (audit mirror lag, chat calls refused by rate limits).
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/runbookbot/runbookbot/engine"
)

// Metrics is a registry fed by Observe.
type Metrics struct {
	reg          *prometheus.Registry
	executions   *prometheus.CounterVec
	steps        *prometheus.CounterVec
	execDuration *prometheus.HistogramVec
	stepDuration *prometheus.HistogramVec
	approvalWait *prometheus.HistogramVec
	approvals    *prometheus.CounterVec
	rollbacks    *prometheus.CounterVec
	active       *prometheus.GaugeVec

	mu      sync.Mutex
	running map[string]started // executions seen starting, until they finish
}

type started struct {
	trigger string
	at      time.Time
}

// New returns the metrics, registered with Go and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), running: map[string]started{}}
	m.executions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runbook_executions_total", Help: "Total number of runbook executions"}, []string{"runbook_name", "trigger_type", "outcome"})
	m.steps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runbook_steps_total", Help: "Total number of runbook steps executed"}, []string{"runbook_name", "step_name", "status"})
	m.execDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "runbook_execution_duration_seconds", Help: "Time spent executing runbooks",
		Buckets: []float64{10, 30, 60, 120, 300, 600, 1800}}, []string{"runbook_name"})
	m.stepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "runbook_step_duration_seconds", Help: "Time spent on individual steps",
		Buckets: []float64{1, 5, 10, 30, 60, 120, 300}}, []string{"runbook_name", "step_name", "step_type"})
	m.approvalWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "runbook_approval_wait_seconds", Help: "Time waiting for approval",
		Buckets: []float64{60, 300, 600, 900, 1800, 3600}}, []string{"runbook_name", "step_name"})
	m.approvals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runbook_approvals_total", Help: "Total approval decisions"}, []string{"runbook_name", "decision"})
	m.rollbacks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runbook_rollbacks_total", Help: "Total rollback executions"}, []string{"runbook_name", "reason", "success"})
	m.active = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "runbook_active_executions", Help: "Currently executing runbooks"}, []string{"runbook_name"})
	m.reg.MustRegister(m.executions, m.steps, m.execDuration, m.stepDuration, m.approvalWait, m.approvals, m.rollbacks, m.active,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe folds one event into the metrics. Subscribe it to the engine.
func (m *Metrics) Observe(e engine.Event) {
	rb := e.RunbookName
	switch e.Type {
	case engine.EventExecutionStarted:
		tt := "manual"
		if e.Trigger != nil && e.Trigger.Type != "" {
			tt = e.Trigger.Type
		}
		m.mu.Lock()
		m.running[e.ExecutionID] = started{trigger: tt, at: e.Time}
		m.mu.Unlock()
		m.active.WithLabelValues(rb).Inc()
	case engine.EventStepFinished:
		s := e.Step
		m.steps.WithLabelValues(rb, s.Name, string(s.Status)).Inc()
		if s.Status != engine.StepSkipped && s.StartTime != nil {
			m.stepDuration.WithLabelValues(rb, s.Name, s.Type).Observe(float64(s.DurationMs) / 1000)
		}
	case engine.EventApprovalDecided:
		a := e.Approval
		m.approvals.WithLabelValues(rb, string(a.Decision)).Inc()
		if a.RespondedAt != nil {
			m.approvalWait.WithLabelValues(rb, a.Step).Observe(a.RespondedAt.Sub(a.RequestedAt).Seconds())
		}
	case engine.EventRollbackFinished:
		r := e.Rollback
		ok := "false"
		if r.Success != nil && *r.Success {
			ok = "true"
		}
		m.rollbacks.WithLabelValues(rb, r.Reason, ok).Inc()
	case engine.EventExecutionFinished:
		m.mu.Lock()
		st, seen := m.running[e.ExecutionID]
		delete(m.running, e.ExecutionID)
		m.mu.Unlock()
		tt := "unknown" // started before this process
		if seen {
			tt = st.trigger
			m.active.WithLabelValues(rb).Dec()
			m.execDuration.WithLabelValues(rb).Observe(e.Time.Sub(st.at).Seconds())
		}
		m.executions.WithLabelValues(rb, tt, string(e.Outcome)).Inc()
	}
}

// Gauge exports a value read at scrape time.
func (m *Metrics) Gauge(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Counter exports a monotonically growing value read at scrape time.
func (m *Metrics) Counter(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
