package bot

import (
	"context"
	"errors"
	"time"
)

// ViewLease is implemented by view stores that several replicas share
// (integrations/redis). One replica at a time shows the event log in chat:
// every execution is rendered by exactly one replica, and the channel's
// post budget, which the platform counts per app, is spent by one outbox.
// The others stand by and take over when the leader stops renewing.
type ViewLease interface {
	// Lead takes the lease for owner, or renews it when owner holds it,
	// for ttl; it reports whether owner holds it now.
	Lead(ctx context.Context, owner string, ttl time.Duration) (bool, error)
	// Resign gives the lease up when owner holds it.
	Resign(ctx context.Context, owner string) error
}

// errStale ends a send queued by a view session that has ended (this
// replica no longer shows the log): the outbox drops it.
var errStale = errors.New("chat view session ended")

// leadTTL is how long a view lease lasts unless renewed.
func (b *Bot) leadTTL() time.Duration {
	if b.cfg.LeaseTTL > 0 {
		return b.cfg.LeaseTTL
	}
	return 10 * time.Second
}

// lead runs session whenever this replica holds the view lease, until ctx
// ends. A session is stopped (its context cancelled) as soon as the lease
// may have passed to another replica: a renewal refused, or none
// succeeding for three quarters of the lease, so that two replicas never
// both believe they lead (the lease in the store outlives the local
// deadline, which is measured from before the renewal was sent).
func (b *Bot) lead(ctx context.Context, l ViewLease, session func(ctx context.Context) error) error {
	ttl := b.leadTTL()
	every := ttl / 4
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		sent := time.Now()
		ok, err := l.Lead(ctx, b.cfg.Owner, ttl)
		if err != nil && ctx.Err() == nil {
			b.log.Warn("chat view: taking the lease", "err", err)
		}
		if ok {
			b.log.Info("chat view: this replica shows the event log in chat", "owner", b.cfg.Owner)
			err := b.leading(ctx, l, sent.Add(ttl*3/4), session)
			if ctx.Err() != nil {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				if rerr := l.Resign(rctx, b.cfg.Owner); rerr != nil {
					b.log.Warn("chat view: giving the lease up", "err", rerr)
				}
				cancel()
				return err
			}
			if err != nil {
				b.log.Error("chat view session ended", "err", err)
			}
			b.log.Warn("chat view: lost the lease; standing by", "owner", b.cfg.Owner)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// leading runs one session while the lease is renewed.
func (b *Bot) leading(ctx context.Context, l ViewLease, valid time.Time, session func(ctx context.Context) error) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- session(sctx) }()
	ttl := b.leadTTL()
	t := time.NewTicker(ttl / 4)
	defer t.Stop()
	deadline := time.NewTimer(time.Until(valid))
	defer deadline.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-deadline.C:
			b.log.Warn("chat view: the lease could not be renewed in time")
			cancel()
			return <-done
		case <-t.C:
			sent := time.Now()
			ok, err := l.Lead(sctx, b.cfg.Owner, ttl)
			switch {
			case err != nil:
				if sctx.Err() == nil {
					b.log.Warn("chat view: renewing the lease", "err", err)
				}
			case !ok:
				cancel()
				return <-done
			default:
				deadline.Reset(time.Until(sent.Add(ttl * 3 / 4)))
			}
		}
	}
}
