package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"
	"github.com/runbookbot/runbookbot/engine"
)

// Forwarder carries approval decisions between bot replicas that share a
// Redis store: a click can land on any replica (Slack hands Socket Mode
// events to any connection), while only the lease holder drives the
// execution. The decision goes to the holder's inbox list; its answer comes
// back on a one-off reply list.
type Forwarder struct {
	store   *Store
	owner   string
	timeout time.Duration
	log     *slog.Logger
}

var _ engine.Forwarder = (*Forwarder)(nil)

// NewForwarder returns a forwarder for the replica named owner (the
// engine's Owner).
func NewForwarder(s *Store, owner string, log *slog.Logger) *Forwarder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{store: s, owner: owner, timeout: 10 * time.Second, log: log}
}

type forwarded struct {
	Request engine.DecisionRequest `json:"request"`
	Reply   string                 `json:"reply"`
}

type forwardReply struct {
	Result  engine.DecisionResult `json:"result"`
	Code    string                `json:"code,omitempty"`
	Message string                `json:"message,omitempty"`
}

func (f *Forwarder) inbox(owner string) string { return f.store.Prefix() + "inbox:" + owner }

// Forward implements engine.Forwarder.
func (f *Forwarder) Forward(ctx context.Context, req engine.DecisionRequest) (engine.DecisionResult, error) {
	res := engine.DecisionResult{ExecutionID: engine.ExecutionOf(req.ApprovalID)}
	holder, _, err := f.store.LeaseHolder(ctx, res.ExecutionID)
	if err != nil {
		return res, err
	}
	if holder == "" || holder == f.owner {
		// Nobody drives it right now (its replica died and the lease has
		// not been taken over yet), or we do and it is not running here.
		return res, engine.ErrNotActive
	}
	reply := f.store.Prefix() + "reply:" + uuid.NewString()
	body, _ := json.Marshal(forwarded{Request: req, Reply: reply})
	c := f.store.Client()
	if err := c.RPush(ctx, f.inbox(holder), body).Err(); err != nil {
		return res, err
	}
	out, err := c.BLPop(ctx, f.timeout, reply).Result()
	if errors.Is(err, goredis.Nil) {
		return res, fmt.Errorf("replica %s did not answer within %s", holder, f.timeout)
	}
	if err != nil {
		return res, err
	}
	var r forwardReply
	if err := json.Unmarshal([]byte(out[1]), &r); err != nil {
		return res, fmt.Errorf("bad reply from replica %s: %w", holder, err)
	}
	return r.Result, engine.DecisionErrorFor(r.Code, r.Message)
}

// Serve answers decisions forwarded to this replica until ctx ends.
func (f *Forwarder) Serve(ctx context.Context, eng *engine.Engine) {
	c := f.store.Client()
	for ctx.Err() == nil {
		out, err := c.BLPop(ctx, 5*time.Second, f.inbox(f.owner)).Result()
		if errors.Is(err, goredis.Nil) || ctx.Err() != nil {
			continue
		}
		if err != nil {
			f.log.Warn("reading the decision inbox", "err", err)
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		var in forwarded
		if err := json.Unmarshal([]byte(out[1]), &in); err != nil {
			f.log.Warn("dropping a malformed forwarded decision", "err", err)
			continue
		}
		res, derr := eng.Decide(ctx, in.Request)
		r := forwardReply{Result: res, Code: engine.DecisionErrorCode(derr)}
		if derr != nil {
			r.Message = derr.Error()
		}
		body, _ := json.Marshal(r)
		pipe := c.TxPipeline()
		pipe.RPush(ctx, in.Reply, body)
		pipe.Expire(ctx, in.Reply, time.Minute)
		if _, err := pipe.Exec(ctx); err != nil {
			f.log.Warn("answering a forwarded decision", "err", err)
		}
	}
}
