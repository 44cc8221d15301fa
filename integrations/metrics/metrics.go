// Package metrics exposes the bot's own Prometheus metrics: the seed
// article's runbook_* series, fed from the engine's event log, plus gauges
// the wiring adds (audit mirror lag, chat calls refused by rate limits).
//
// # Exact across restarts and replicas
//
// With FromLog, the runbook_* series are folded from the durable event log
// itself, read on every scrape from where the last scrape stopped. They are
// totals of the log, not of the process: a restarted process reads the log
// again and exports the same totals it exported before (no counter reset
// for rate() to misread, no increment lost with the process), and every
// replica sharing a store exports the same values. Aggregate replicas with
// max, not sum: `max without (instance, pod) (runbook_executions_total)`
// (deploy/prometheus-rules does). runbook_active_executions counts the
// executions the log shows unfinished, so an execution taken over by
// another replica is counted once, wherever it runs.
//
// Without FromLog, Observe feeds the same series from events as they are
// published (one process, no store).
//
// Series added to the seed's: runbook_approvals_pending and
// runbook_approval_oldest_pending_timestamp_seconds (per runbook, while an
// approval waits), runbook_drift_findings (set by the drift check).
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/runbookbot/runbookbot/engine"
)

// Source is the event log FromLog reads (engine.Store has it).
type Source interface {
	ReadFrom(ctx context.Context, after uint64, limit int) ([]engine.Event, error)
}

// Option configures Metrics.
type Option func(*Metrics)

// FromLog folds the runbook_* series from src on every scrape (see the
// package comment); Observe is then ignored.
func FromLog(src Source) Option { return func(m *Metrics) { m.src = src } }

// Metrics is a registry fed by the event log (FromLog) or by Observe.
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
	pending      *prometheus.GaugeVec
	oldest       *prometheus.GaugeVec
	drift        *prometheus.GaugeVec
	logErrors    prometheus.Counter

	src Source

	mu      sync.Mutex // folds one event at a time; readMu orders log reads
	readMu  sync.Mutex
	cursor  uint64
	running map[string]*started // executions seen starting, until they finish
}

type started struct {
	runbook string
	trigger string
	at      time.Time
	waiting map[string]time.Time // approval id → requested at
}

// New returns the metrics, registered with Go and process collectors.
func New(opts ...Option) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), running: map[string]*started{}}
	for _, o := range opts {
		o(m)
	}
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
	m.pending = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "runbook_approvals_pending", Help: "Approvals requested and not yet decided"}, []string{"runbook_name"})
	m.oldest = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "runbook_approval_oldest_pending_timestamp_seconds", Help: "When the oldest undecided approval was requested (unix seconds)"}, []string{"runbook_name"})
	m.drift = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "runbook_drift_findings", Help: "Targets of a runbook that no longer match the infrastructure, by kind"}, []string{"runbook_name", "kind"})
	m.logErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "runbookbot_metrics_log_errors_total", Help: "Scrapes that could not read the event log (values shown are from the last read)"})
	// logErrors is collected by logCollector, after the read it counts
	// (the registry gathers collectors concurrently).
	m.reg.MustRegister(&logCollector{m: m}, m.drift,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// logCollector reads the log up to now before the runbook_* series are
// collected, so a scrape shows every event stored before it.
type logCollector struct{ m *Metrics }

func (c *logCollector) vecs() []prometheus.Collector {
	m := c.m
	return []prometheus.Collector{m.executions, m.steps, m.execDuration, m.stepDuration, m.approvalWait, m.approvals, m.rollbacks, m.active, m.pending, m.oldest, m.logErrors}
}

func (c *logCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range c.vecs() {
		v.Describe(ch)
	}
}

func (c *logCollector) Collect(ch chan<- prometheus.Metric) {
	if c.m.src != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.m.CatchUp(ctx); err != nil {
			c.m.logErrors.Inc()
		}
		cancel()
	}
	for _, v := range c.vecs() {
		v.Collect(ch)
	}
}

// CatchUp folds every event stored after the last one read (FromLog).
// Scrapes call it; it is exported for tests and one-off exports.
func (m *Metrics) CatchUp(ctx context.Context) error {
	if m.src == nil {
		return nil
	}
	m.readMu.Lock()
	defer m.readMu.Unlock()
	for {
		evs, err := m.src.ReadFrom(ctx, m.cursor, 1024)
		if err != nil {
			return err
		}
		for _, e := range evs {
			m.fold(e)
			m.cursor = e.Pos
		}
		if len(evs) < 1024 {
			return nil
		}
	}
}

// Prime creates the series of every runbook in the catalog at zero, so
// that the first execution, failure or rollback of a runbook shows in
// rate() and increase() (a series that appears at 1 does not).
func (m *Metrics) Prime(cat *engine.Catalog) {
	if cat == nil {
		return
	}
	outcomes := []engine.Outcome{engine.OutcomeSuccess, engine.OutcomeFailure, engine.OutcomePartial, engine.OutcomeRollback, engine.OutcomeAborted}
	for name, rb := range cat.Runbooks {
		triggers := []string{"manual"}
		if t := rb.Trigger.Type; t != "" && t != "manual" {
			triggers = append(triggers, t)
		}
		for _, tt := range triggers {
			for _, o := range outcomes {
				m.executions.WithLabelValues(name, tt, string(o))
			}
		}
		for _, s := range rb.Steps {
			for _, st := range []engine.StepStatus{engine.StepSuccess, engine.StepFailure} {
				m.steps.WithLabelValues(name, s.Name, string(st))
			}
		}
		for _, d := range []engine.Decision{engine.DecisionApprove, engine.DecisionReject} {
			m.approvals.WithLabelValues(name, string(d))
		}
		m.active.WithLabelValues(name)
		m.pending.WithLabelValues(name)
	}
}

// Observe folds one event into the metrics. Subscribe it to the engine
// when there is no FromLog source; with one it does nothing.
func (m *Metrics) Observe(e engine.Event) {
	if m.src != nil {
		return
	}
	m.fold(e)
}

func (m *Metrics) fold(e engine.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rb := e.RunbookName
	switch e.Type {
	case engine.EventExecutionStarted:
		tt := "manual"
		if e.Trigger != nil && e.Trigger.Type != "" {
			tt = e.Trigger.Type
		}
		if _, dup := m.running[e.ExecutionID]; !dup {
			m.running[e.ExecutionID] = &started{runbook: rb, trigger: tt, at: e.Time}
			m.active.WithLabelValues(rb).Inc()
		}
	case engine.EventStepFinished:
		s := e.Step
		if s == nil {
			return
		}
		m.steps.WithLabelValues(rb, s.Name, string(s.Status)).Inc()
		if s.Status != engine.StepSkipped && s.StartTime != nil {
			m.stepDuration.WithLabelValues(rb, s.Name, s.Type).Observe(float64(s.DurationMs) / 1000)
		}
	case engine.EventApprovalRequested:
		if st := m.running[e.ExecutionID]; st != nil && e.Approval != nil {
			if st.waiting == nil {
				st.waiting = map[string]time.Time{}
			}
			st.waiting[e.Approval.ID] = e.Approval.RequestedAt
			m.pendingChanged(rb)
		}
	case engine.EventApprovalDecided:
		a := e.Approval
		if a == nil {
			return
		}
		m.approvals.WithLabelValues(rb, string(a.Decision)).Inc()
		if a.RespondedAt != nil {
			m.approvalWait.WithLabelValues(rb, a.Step).Observe(a.RespondedAt.Sub(a.RequestedAt).Seconds())
		}
		if st := m.running[e.ExecutionID]; st != nil {
			delete(st.waiting, a.ID)
			m.pendingChanged(rb)
		}
	case engine.EventRollbackFinished:
		r := e.Rollback
		if r == nil {
			return
		}
		ok := "false"
		if r.Success != nil && *r.Success {
			ok = "true"
		}
		m.rollbacks.WithLabelValues(rb, r.Reason, ok).Inc()
	case engine.EventExecutionFinished:
		st, seen := m.running[e.ExecutionID]
		delete(m.running, e.ExecutionID)
		tt := "unknown" // started before what this process saw
		if seen {
			tt = st.trigger
			m.active.WithLabelValues(rb).Dec()
			m.execDuration.WithLabelValues(rb).Observe(e.Time.Sub(st.at).Seconds())
			if len(st.waiting) > 0 {
				st.waiting = nil
				m.pendingChanged(rb)
			}
		}
		m.executions.WithLabelValues(rb, tt, string(e.Outcome)).Inc()
	}
}

// pendingChanged recomputes the pending approval gauges of a runbook.
func (m *Metrics) pendingChanged(rb string) {
	n := 0
	var oldest time.Time
	for _, st := range m.running {
		if st.runbook != rb {
			continue
		}
		for _, at := range st.waiting {
			n++
			if oldest.IsZero() || at.Before(oldest) {
				oldest = at
			}
		}
	}
	m.pending.WithLabelValues(rb).Set(float64(n))
	if n == 0 {
		m.oldest.DeleteLabelValues(rb)
		return
	}
	m.oldest.WithLabelValues(rb).Set(float64(oldest.UnixMilli()) / 1000)
}

// SetDrift replaces the drift findings: counts per runbook and kind. List
// every runbook checked, with a zero count ("none") when it has no drift,
// so that an alert on drift resolves when the drift is fixed; series of
// runbooks not listed are removed.
func (m *Metrics) SetDrift(findings map[string]map[string]int) {
	m.drift.Reset()
	for rb, kinds := range findings {
		for kind, n := range kinds {
			m.drift.WithLabelValues(rb, kind).Set(float64(n))
		}
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
