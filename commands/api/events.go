package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/engine"
)

// events streams an execution's events as Server-Sent Events: each event
// as `id: SEQ`, `event: TYPE`, `data: JSON`, from the first (or after
// Last-Event-ID / ?after=SEQ) and live until execution.finished, after
// which the stream ends. Events are read from the store, so events another
// replica writes arrive too (within Poll); this replica's arrive at once.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w, r, commands.PermStatus, "read executions") {
		return
	}
	sum, ok := s.lookupExecution(w, r)
	if !ok {
		return
	}
	var after int64
	for _, v := range []string{r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, apiError{Code: "bad_parameters", Message: "after / Last-Event-ID must be an event's seq",
				Parameters: []paramProblem{{Name: "after", Problem: fmt.Sprintf("%q is not a sequence number", v)}}})
			return
		}
		after = n
	}
	flusher, _ := w.(http.Flusher)
	id := sum.ExecutionID
	wake := make(chan struct{}, 1)
	unsubscribe := s.cfg.Engine.Subscribe(func(e engine.Event) {
		if e.ExecutionID == id {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	defer unsubscribe()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	ctx := r.Context()
	lastWrite := s.cfg.Clock.Now()
	for {
		evs, err := s.cfg.Engine.Store().Events(ctx, id)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("api: event stream: reading events", "execution", id, "err", err)
				fmt.Fprintf(w, "event: error\ndata: {\"message\":\"internal error; the details are in the bot's log\"}\n\n")
			}
			return
		}
		finished := false
		for _, e := range evs {
			if e.Seq <= after {
				continue
			}
			b, err := json.Marshal(e)
			if err != nil {
				s.log.Error("api: event stream: encoding an event", "execution", id, "seq", e.Seq, "err", err)
				return
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type, b); err != nil {
				return // the client went away
			}
			after = e.Seq
			lastWrite = s.cfg.Clock.Now()
			finished = finished || e.Type == engine.EventExecutionFinished
		}
		if flusher != nil {
			flusher.Flush()
		}
		if finished || (len(evs) > 0 && evs[len(evs)-1].Type == engine.EventExecutionFinished) {
			return
		}
		t := s.cfg.Clock.NewTimer(s.cfg.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
			t.Stop()
		case <-t.C():
			if s.cfg.Clock.Now().Sub(lastWrite) >= s.cfg.KeepAlive {
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
					return
				}
				lastWrite = s.cfg.Clock.Now()
			}
		}
	}
}
