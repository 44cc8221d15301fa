package bot

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// view keeps every conversation in step with the event log. It is a reader
// of the log with a durable cursor, like the Redis mirror: it reads events
// from the store (the engine's notifications only wake it up), folds them
// into threads, and asks the outboxes for the messages that changed. What
// was delivered is saved per execution (message references and content
// hashes) in the ViewStore; the cursor only moves past an event once its
// execution's conversation shows it. After a restart, reading resumes at the
// cursor, and every execution whose record lags its events is re-rendered
// from its full log: messages whose content already matches are left alone,
// the others are edited (or posted) to the final truth.
type view struct {
	b     *Bot
	log   *slog.Logger
	store engine.Store
	vs    ViewStore

	mu      sync.Mutex
	execs   map[string]*execView
	low     []lowEntry // events not yet shown, in log order
	readPos uint64
	cursor  uint64
	saved   uint64
	// sess is the current session's context: it ends when this replica
	// stops showing the log (the view lease passed on, or shutdown).
	sess context.Context

	wake chan struct{}
}

// lowEntry is an event that is not shown yet.
type lowEntry struct {
	pos  uint64
	exec string
	seq  int64
}

// execView is one execution as the view knows it.
type execView struct {
	id     string
	t      *thread
	chat   *chat // nil: not shown in chat (terminal, schedule)
	rec    viewRecord
	loaded bool
	// outstanding maps message keys asked of the outbox to the event seq
	// that asked; a key leaves when a rendering at or after that seq is
	// delivered (or left out).
	outstanding map[string]int64
	touched     time.Time
	refreshed   time.Time // the parent's elapsed time was last refreshed
	// sess is the session that rendered it; sends of an ended session
	// are dropped.
	sess context.Context
	// saveMu orders this execution's record writes: two deliveries
	// settling at once must reach the store in the order their records
	// were taken, or an older record (without the other's message ref)
	// would overwrite a newer one and a restart would post that message
	// again.
	saveMu sync.Mutex
}

func newView(b *Bot, vs ViewStore) *view {
	return &view{b: b, log: b.log, store: b.eng.Store(), vs: vs, execs: map[string]*execView{}, wake: make(chan struct{}, 1)}
}

// poke wakes the reader (the engine persisted something).
func (v *view) poke() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// run shows the log until ctx ends: always, or, when the view store is
// shared by replicas, while this replica holds the view lease.
func (v *view) run(ctx context.Context) error {
	if l, ok := v.vs.(ViewLease); ok && v.b.cfg.Owner != "" {
		return v.b.lead(ctx, l, v.session)
	}
	return v.session(ctx)
}

// session reads the log from the saved cursor until ctx ends, as after a
// restart: every execution whose record lags its events is re-rendered.
func (v *view) session(ctx context.Context) error {
	v.mu.Lock()
	v.execs, v.low, v.sess = map[string]*execView{}, nil, ctx
	v.mu.Unlock()
	c, err := v.vs.Cursor(ctx)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.readPos, v.cursor, v.saved = c, c, c
	v.mu.Unlock()
	sweep := time.NewTicker(v.b.cfg.SweepEvery)
	defer sweep.Stop()
	for {
		n, err := v.readBatch(ctx)
		if err != nil && ctx.Err() == nil {
			v.log.Error("chat view: reading the event log", "err", err)
		}
		v.advance(ctx)
		if n > 0 && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-v.wake:
		case <-sweep.C:
			v.sweep(ctx)
		}
	}
}

const readBatch = 512

// readBatch reads and folds the next events of the log.
func (v *view) readBatch(ctx context.Context) (int, error) {
	v.mu.Lock()
	from := v.readPos
	v.mu.Unlock()
	evs, err := v.store.ReadFrom(ctx, from, readBatch)
	if err != nil {
		return 0, err
	}
	for _, e := range evs {
		if err := v.ingest(ctx, e); err != nil {
			return 0, err
		}
		v.mu.Lock()
		v.readPos = e.Pos
		v.mu.Unlock()
	}
	return len(evs), nil
}

// ingest folds one event into its execution and asks for what changed.
func (v *view) ingest(ctx context.Context, e engine.Event) error {
	v.mu.Lock()
	ev := v.execs[e.ExecutionID]
	v.mu.Unlock()
	if ev == nil || !ev.loaded {
		// First sight of this execution (since the start): read what its
		// conversation was shown and its whole log.
		raw, err := v.vs.Load(ctx, e.ExecutionID)
		if err != nil {
			return err
		}
		rec := decodeRecord(raw)
		var evs []engine.Event
		if e.Seq > 1 || rec.Seq > 0 {
			if evs, err = v.store.Events(ctx, e.ExecutionID); err != nil {
				return err
			}
		} else {
			evs = []engine.Event{e}
		}
		ev = &execView{id: e.ExecutionID, t: newThread(e.ExecutionID), rec: rec, loaded: true, outstanding: map[string]int64{}, sess: ctx}
		for _, x := range evs {
			v.fold(ev, x)
		}
		v.mu.Lock()
		ev.chat = v.b.chatFor(ev.t.trigger)
		v.execs[ev.id] = ev
		ms := v.marksAll(ev)
		v.noteLocked(ev, e)
		v.mu.Unlock()
		v.send(ev, ms)
		v.after(ev, e)
		return nil
	}
	v.mu.Lock()
	c := v.fold(ev, e)
	ms := v.marksFor(ev, c, e)
	v.noteLocked(ev, e)
	v.mu.Unlock()
	v.send(ev, ms)
	v.after(ev, e)
	return nil
}

// after runs the bot's own reactions to an event (alert slots).
func (v *view) after(ev *execView, e engine.Event) {
	if e.Type == engine.EventExecutionFinished && v.b.alertsOn() {
		id := e.ExecutionID
		v.b.goOwned(func(ctx context.Context) { v.b.alertFinished(ctx, id) })
	}
}

// fold applies an event to a thread, filling in what only the catalog
// knows (step count, the gated step's parameters).
func (v *view) fold(ev *execView, e engine.Event) change {
	t := ev.t
	if e.Type == engine.EventExecutionStarted {
		if rb, err := v.b.eng.Catalog().Lookup(e.RunbookName); err == nil {
			t.totalSteps = len(rb.Preconditions) + len(rb.Steps)
		}
	}
	c := t.apply(e)
	if e.Type == engine.EventApprovalRequested && c.approval != "" {
		if a := t.byApproval[c.approval]; a != nil {
			a.gated = v.b.gatedParams(t, a.rec.Step)
		}
	}
	return c
}

// noteLocked records that e is not shown yet (when it is not).
func (v *view) noteLocked(ev *execView, e engine.Event) {
	ev.touched = time.Now()
	if ev.chat == nil || ev.rec.Seq >= e.Seq {
		return
	}
	if len(ev.outstanding) == 0 {
		// Nothing to send for it (or nothing changed): shown as it is.
		ev.rec.Seq = max(ev.rec.Seq, ev.t.lastSeq)
		return
	}
	v.low = append(v.low, lowEntry{pos: e.Pos, exec: ev.id, seq: e.Seq})
}

// advance moves the cursor past every event that is shown, and saves it.
func (v *view) advance(ctx context.Context) {
	v.mu.Lock()
	i := 0
	for ; i < len(v.low); i++ {
		l := v.low[i]
		ev := v.execs[l.exec]
		if ev != nil && ev.chat != nil && ev.rec.Seq < l.seq {
			break
		}
	}
	v.low = v.low[i:]
	if len(v.low) == 0 {
		v.cursor = v.readPos
	} else {
		v.cursor = max(v.cursor, v.low[0].pos-1)
	}
	c, saved := v.cursor, v.saved
	v.prune()
	v.mu.Unlock()
	if c > saved {
		if err := v.vs.SetCursor(ctx, c); err != nil {
			v.log.Error("chat view: saving the cursor", "err", err)
			return
		}
		v.mu.Lock()
		v.saved = max(v.saved, c)
		v.mu.Unlock()
	}
}

// prune forgets shown, finished executions once there are many.
func (v *view) prune() {
	if len(v.execs) < 2000 {
		return
	}
	for id, ev := range v.execs {
		if ev.t.finished() && len(ev.outstanding) == 0 && time.Since(ev.touched) > time.Minute {
			delete(v.execs, id)
		}
	}
}

// sweep asks again for messages whose sends were given up, and refreshes
// the elapsed time of running executions' parents.
func (v *view) sweep(context.Context) {
	now := time.Now()
	v.mu.Lock()
	type pend struct {
		ev *execView
		ms []mark
	}
	var all []pend
	for _, ev := range v.execs {
		if ev.chat == nil {
			continue
		}
		var ms []mark
		for key := range ev.outstanding {
			if !ev.chat.out.pending(ev.id + "|" + key) {
				if m, ok := v.markKey(ev, key); ok {
					ms = append(ms, m)
				}
			}
		}
		if m, ok := v.refreshLocked(ev, now); ok {
			ms = append(ms, m)
		}
		if len(ms) > 0 {
			all = append(all, pend{ev, ms})
		}
	}
	v.mu.Unlock()
	for _, p := range all {
		v.send(p.ev, p.ms)
	}
}

// refreshLocked asks, at the lowest priority, for a running execution's
// parent to be edited so that its elapsed time stays live: every
// ElapsedEvery, when the parent is shown and nothing else of it is on its
// way. Caller holds v.mu.
func (v *view) refreshLocked(ev *execView, now time.Time) (mark, bool) {
	every := v.b.cfg.ElapsedEvery
	if every < 0 || ev.t.finished() || len(ev.outstanding) > 0 || ev.rec.Msgs[keyParent].Ref.IsZero() {
		return mark{}, false
	}
	if ev.refreshed.IsZero() {
		ev.refreshed = now // counted from the first sweep that sees it
		return mark{}, false
	}
	if now.Sub(ev.refreshed) < every {
		return mark{}, false
	}
	ev.refreshed = now
	m, ok := v.markKey(ev, keyParent)
	if !ok || m.kind != kindUpdate {
		return mark{}, false
	}
	m.prio = prioStep
	ev.outstanding[keyParent] = max(ev.outstanding[keyParent], ev.t.lastSeq)
	return m, true
}

// send hands marks to the execution's outbox (never under v.mu).
func (v *view) send(ev *execView, ms []mark) {
	if ev.chat != nil && len(ms) > 0 {
		ev.chat.out.add(ms...)
	}
}

// Message keys within an execution's record.
const (
	keyParent = "parent"
)

func stepRecKey(step string) string        { return "step:" + step }
func approvalRecKey(id string) string      { return "approval:" + id }
func escRecKey(id string, tier int) string { return "esc:" + id + ":" + itoa(tier) }
func itoa(n int) string                    { b, _ := json.Marshal(n); return string(b) }

// marksAll asks for every message of an execution (after a restart, or on
// first sight); those already showing the truth cost nothing.
func (v *view) marksAll(ev *execView) []mark {
	if ev.chat == nil || ev.rec.Seq >= ev.t.lastSeq {
		return nil
	}
	keys := []string{keyParent}
	for _, s := range ev.t.steps {
		keys = append(keys, stepRecKey(s.key))
	}
	for _, a := range ev.t.approvals {
		keys = append(keys, approvalRecKey(a.rec.ID))
		for _, e := range a.escalated {
			keys = append(keys, escRecKey(a.rec.ID, e.tier))
		}
	}
	return v.marksKeys(ev, keys, ev.t.lastSeq)
}

// marksFor asks for the messages one event changed.
func (v *view) marksFor(ev *execView, c change, e engine.Event) []mark {
	if ev.chat == nil {
		return nil
	}
	var keys []string
	if c.parent {
		keys = append(keys, keyParent)
	}
	if c.step != "" {
		keys = append(keys, stepRecKey(c.step))
	}
	if c.approval != "" {
		keys = append(keys, approvalRecKey(c.approval))
	}
	if c.escalate != "" {
		if a := ev.t.byApproval[c.escalate]; a != nil && len(a.escalated) > 0 {
			keys = append(keys, escRecKey(a.rec.ID, a.escalated[len(a.escalated)-1].tier))
		}
	}
	if e.Type == engine.EventExecutionFinished {
		// A cancelled execution closes its open approval cards.
		for _, a := range ev.t.approvals {
			if a.cancelled {
				keys = append(keys, approvalRecKey(a.rec.ID))
			}
		}
	}
	return v.marksKeys(ev, keys, e.Seq)
}

func (v *view) marksKeys(ev *execView, keys []string, seq int64) []mark {
	var ms []mark
	for _, k := range keys {
		if m, ok := v.markKey(ev, k); ok {
			ev.outstanding[k] = max(ev.outstanding[k], seq)
			ms = append(ms, m)
		}
	}
	return ms
}

// markKey builds the outbox request for one message of an execution.
// Caller holds v.mu.
func (v *view) markKey(ev *execView, key string) (mark, bool) {
	t, ch := ev.t, ev.chat
	sh := ev.rec.Msgs[key]
	if sh.Skipped {
		return mark{}, false
	}
	m := mark{key: ev.id + "|" + key, ready: true, kind: kindUpdate}
	if sh.Ref.IsZero() {
		m.kind = kindPost
	}
	switch {
	case key == keyParent:
		m.conv = t.trigger.Channel
		if m.kind == kindPost && t.trigger.Message != "" {
			m.kind = kindUpdate
		}
		m.prio = prioNormal
		if m.kind == kindPost || t.finished() || t.status == engine.StatusWaiting {
			m.prio = prioUrgent
		}
	case len(key) > 5 && key[:5] == "step:":
		m.conv = t.trigger.Channel
		m.prio = prioStep
		m.ready = v.replyThread(ev) != ""
		if m.kind == kindPost {
			m.skip = func(ctx context.Context) { v.skipStep(ctx, ev, key) }
		}
	case len(key) > 9 && key[:9] == "approval:":
		a := t.byApproval[key[9:]]
		if a == nil {
			return mark{}, false
		}
		m.conv = v.b.approvalChannel(ch, a.rec)
		m.prio = prioUrgent
	case len(key) > 4 && key[:4] == "esc:":
		if !sh.Ref.IsZero() {
			return mark{}, false // a notice is posted once
		}
		id, _ := splitEsc(key)
		a := t.byApproval[id]
		if a == nil {
			return mark{}, false
		}
		m.conv = v.b.approvalChannel(ch, a.rec)
		m.prio = prioNormal
		m.ready = !ev.rec.Msgs[approvalRecKey(id)].Ref.IsZero()
	default:
		return mark{}, false
	}
	m.send = func(ctx context.Context) error { return v.deliver(ctx, ev, key) }
	return m, true
}

func splitEsc(key string) (string, int) {
	rest := key[4:]
	for i := len(rest) - 1; i >= 0; i-- {
		if rest[i] == ':' {
			var n int
			_ = json.Unmarshal([]byte(rest[i+1:]), &n)
			return rest[:i], n
		}
	}
	return rest, 0
}

// replyThread is where an execution's replies go: the thread it was
// started in (an alert's), else its parent. Caller holds v.mu.
func (v *view) replyThread(ev *execView) string {
	if ev.t.trigger.Thread != "" {
		return ev.t.trigger.Thread
	}
	if r := ev.rec.Msgs[keyParent].Ref; !r.IsZero() {
		return r.ID
	}
	return ev.t.trigger.Message
}

// rendering is what deliver needs, taken under v.mu.
type rendering struct {
	msg      Message
	hash     uint64
	seq      int64
	conv     string
	thread   string
	ref      MessageRef
	posting  bool
	findKey  string
	prev     shown
	needLink MessageRef // fetch a link before rendering (the parent, for approval cards)
}

// render renders one message of an execution. Caller holds v.mu.
func (v *view) render(ev *execView, key string, now time.Time) (rendering, bool) {
	t, sh := ev.t, ev.rec.Msgs[key]
	r := rendering{seq: t.lastSeq, ref: sh.Ref, posting: sh.Posting, conv: t.trigger.Channel, prev: sh}
	switch {
	case key == keyParent:
		if r.ref.IsZero() && t.trigger.Message != "" {
			r.ref = MessageRef{Conversation: t.trigger.Channel, ID: t.trigger.Message}
		}
		links := parentLinks{}
		for _, a := range t.approvals {
			links[a.rec.ID] = ev.rec.links(approvalRecKey(a.rec.ID))
		}
		skipped := false
		for k, s := range ev.rec.Msgs {
			if s.Skipped && len(k) > 5 && k[:5] == "step:" {
				skipped = true
			}
		}
		r.msg = renderParent(t, now, links, skipped)
		r.thread = t.trigger.Thread
		r.findKey = parentKey(t.id)
	case key[:5] == "step:":
		s := t.byKey[key[5:]]
		if s == nil {
			return r, false
		}
		r.msg = renderStep(t, s)
		r.thread = v.replyThread(ev)
		r.findKey = stepKey(t.id, s.key)
	case len(key) > 9 && key[:9] == "approval:":
		a := t.byApproval[key[9:]]
		if a == nil {
			return r, false
		}
		link := ev.rec.links(keyParent)
		if p := ev.rec.Msgs[keyParent].Ref; link == "" && !p.IsZero() {
			r.needLink = p
		}
		r.msg = renderApproval(a, link, v.b.hasBypass(a.runbook))
		r.conv = v.b.approvalChannel(ev.chat, a.rec)
		r.findKey = approvalKey(a.rec.ID)
	case key[:4] == "esc:":
		id, tier := splitEsc(key)
		a := t.byApproval[id]
		if a == nil {
			return r, false
		}
		for _, e := range a.escalated {
			if e.tier == tier {
				r.msg = renderEscalation(e, v.b.groups())
			}
		}
		r.conv = v.b.approvalChannel(ev.chat, a.rec)
		r.thread = ev.rec.Msgs[approvalRecKey(id)].Ref.ID
		r.findKey = ""
	}
	r.hash = hashMessage(r.msg)
	return r, true
}

func (r viewRecord) links(key string) string {
	if r.Links == nil {
		return ""
	}
	return r.Links[key]
}

// deliver brings one message to the truth: nothing when it already shows
// it, else an edit, else a post (looking first for a post a crash may have
// left unrecorded).
func (v *view) deliver(ctx context.Context, ev *execView, key string) error {
	if ev.sess.Err() != nil {
		return errStale
	}
	ctx, stop := joinCancel(ctx, ev.sess)
	defer stop()
	p := ev.chat.p
	v.mu.Lock()
	r, ok := v.render(ev, key, v.b.cfg.Now())
	v.mu.Unlock()
	if !ok {
		v.settle(ctx, ev, key, shown{}, 1<<62, false)
		return nil
	}
	if !r.needLink.IsZero() {
		if l, err := p.Link(ctx, r.needLink); err == nil {
			v.mu.Lock()
			ev.rec.setLink(keyParent, l)
			r, _ = v.render(ev, key, v.b.cfg.Now())
			v.mu.Unlock()
		}
	}
	if !r.ref.IsZero() && r.prev.Hash == r.hash && !r.prev.Posting {
		v.settle(ctx, ev, key, shown{Ref: r.ref, Hash: r.hash}, r.seq, false)
		return nil
	}
	if r.ref.IsZero() && r.posting && r.findKey != "" {
		found, err := p.Find(ctx, r.conv, r.thread, r.findKey)
		switch {
		case err == nil:
			r.ref = found
		case !errors.Is(err, ErrNotFound):
			// Not knowing whether the message is there (the platform is
			// not connected yet, say): try again later rather than post
			// it a second time.
			return err
		}
	}
	if !r.ref.IsZero() {
		if err := p.Update(ctx, r.ref, r.msg); err != nil {
			return err
		}
		v.settle(ctx, ev, key, shown{Ref: r.ref, Hash: r.hash}, r.seq, false)
		return nil
	}
	// Record the attempt first: a crash between the post and its record
	// then looks for the message instead of posting it twice.
	if err := v.save(ctx, ev, func(rec *viewRecord) { s := rec.Msgs[key]; s.Posting = true; rec.Msgs[key] = s }); err != nil {
		return err
	}
	ref, err := p.Post(ctx, r.conv, r.thread, r.msg)
	if err != nil {
		return err
	}
	ev.chat.out.learn(r.conv, ref.Conversation)
	v.settle(ctx, ev, key, shown{Ref: ref, Hash: r.hash}, r.seq, true)
	return nil
}

// joinCancel returns ctx, cancelled also when other ends.
func joinCancel(ctx, other context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(other, cancel)
	return ctx, func() { stop(); cancel() }
}

// settle records a delivered message; when it was the last one
// outstanding, the execution's record moves to its latest event.
func (v *view) settle(ctx context.Context, ev *execView, key string, s shown, seq int64, posted bool) {
	var follow []mark
	var linkKey string
	err := v.save(ctx, ev, func(rec *viewRecord) {
		if s.Ref.IsZero() && !s.Skipped {
			delete(rec.Msgs, key)
		} else {
			rec.Msgs[key] = s
		}
		if q, ok := ev.outstanding[key]; ok && q <= seq {
			delete(ev.outstanding, key)
		}
		if len(ev.outstanding) == 0 {
			rec.Seq = max(rec.Seq, ev.t.lastSeq)
		}
		if posted {
			// Messages that waited for this one (replies under the
			// parent, escalations under a card) can go now.
			for k := range ev.outstanding {
				if m, ok := v.markKey(ev, k); ok && m.ready {
					follow = append(follow, m)
				}
			}
			if key == keyParent {
				// Approval cards link to the parent.
				for _, a := range ev.t.approvals {
					k := approvalRecKey(a.rec.ID)
					ev.outstanding[k] = max(ev.outstanding[k], ev.t.lastSeq)
					if m, ok := v.markKey(ev, k); ok {
						follow = append(follow, m)
					}
				}
			}
			if len(key) > 9 && key[:9] == "approval:" {
				linkKey = key
			}
		}
	})
	if err != nil {
		v.log.Error("chat view: saving what was shown", "execution", ev.id, "err", err)
	}
	v.send(ev, follow)
	if linkKey != "" {
		// The parent links to its approval cards.
		if l, err := ev.chat.p.Link(ctx, s.Ref); err == nil {
			v.mu.Lock()
			ev.rec.setLink(linkKey, l)
			ev.outstanding[keyParent] = max(ev.outstanding[keyParent], ev.t.lastSeq)
			m, ok := v.markKey(ev, keyParent)
			v.mu.Unlock()
			if ok {
				v.send(ev, []mark{m})
			}
		}
	}
	v.poke()
}

// skipStep leaves a step's reply out (the channel's budget is taken by
// what matters more); the parent lists it and says some were left out.
func (v *view) skipStep(ctx context.Context, ev *execView, key string) {
	v.mu.Lock()
	ev.outstanding[keyParent] = max(ev.outstanding[keyParent], ev.t.lastSeq)
	m, ok := v.markKey(ev, keyParent)
	v.mu.Unlock()
	v.settle(ctx, ev, key, shown{Skipped: true}, 1<<62, false)
	if ok {
		v.send(ev, []mark{m})
	}
}

// save changes an execution's record and writes it.
func (v *view) save(ctx context.Context, ev *execView, f func(*viewRecord)) error {
	ev.saveMu.Lock()
	defer ev.saveMu.Unlock()
	v.mu.Lock()
	f(&ev.rec)
	raw, err := json.Marshal(ev.rec)
	v.mu.Unlock()
	if err != nil {
		return err
	}
	return v.vs.Save(ctx, ev.id, raw)
}

func (r *viewRecord) setLink(key, l string) {
	if r.Links == nil {
		r.Links = map[string]string{}
	}
	r.Links[key] = l
}

// settled reports whether everything read is shown and nothing is queued.
func (v *view) settled(ctx context.Context) bool {
	v.mu.Lock()
	if v.sess == nil || v.sess.Err() != nil {
		v.mu.Unlock()
		return false // not showing the log (another replica does)
	}
	pos, low := v.readPos, len(v.low)
	var lag []string
	for id, ev := range v.execs {
		if ev.chat != nil && len(ev.outstanding) > 0 {
			lag = append(lag, id)
		}
	}
	v.mu.Unlock()
	if low > 0 || len(lag) > 0 {
		return false
	}
	evs, err := v.store.ReadFrom(ctx, pos, 1)
	return err == nil && len(evs) == 0
}

// lagging lists executions whose conversation does not show their latest
// event yet, sorted.
func (v *view) lagging() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for id, ev := range v.execs {
		if ev.chat != nil && ev.rec.Seq < ev.t.lastSeq {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func hashMessage(m Message) uint64 {
	h := fnv.New64a()
	_ = json.NewEncoder(h).Encode(m)
	return h.Sum64()
}
