package bot

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/runbookbot/runbookbot/commands/alerts"
)

// stormAt is how many alerts may wait for their thread in one channel
// before the bot answers them all with one grouped storm message: about
// what the channel's post budget answers within a second.
const stormAt = 3

// storm is the grouped answer to more new alerts than a channel can give
// threads at once: one message listing them, kept up to date while their
// threads are posted as the budget allows.
type storm struct {
	mu      sync.Mutex
	ref     MessageRef
	waiting []alerts.Alert // firing alerts whose thread is not posted yet
	total   int            // alerts in this storm so far
	posted  bool           // the storm message was asked for
}

// stormOf returns the storm state of a channel on a platform.
func (b *Bot) stormOf(c *chat, channel string) *storm {
	b.alerts.mu.Lock()
	defer b.alerts.mu.Unlock()
	if b.alerts.storms == nil {
		b.alerts.storms = map[string]*storm{}
	}
	k := c.p.Name() + "|" + channel
	st := b.alerts.storms[k]
	if st == nil {
		st = &storm{}
		b.alerts.storms[k] = st
	}
	return st
}

// openAlertThread queues the root message of a new alert's thread (it
// does not wait for the channel's budget); once it is posted the alert is
// handled in it. When more alerts wait for threads in the channel than its
// budget answers at once, one storm message answers them all first.
func (b *Bot) openAlertThread(c *chat, channel string, a alerts.Alert) {
	b.alerts.mu.Lock()
	if b.alerts.rooting == nil {
		b.alerts.rooting = map[string]bool{}
	}
	if b.alerts.rooting[a.Fingerprint] {
		b.alerts.mu.Unlock()
		return // its thread is on its way
	}
	b.alerts.rooting[a.Fingerprint] = true
	b.alerts.mu.Unlock()

	st := b.stormOf(c, channel)
	st.mu.Lock()
	st.waiting = append(st.waiting, a)
	st.total++
	show := len(st.waiting) >= stormAt
	st.mu.Unlock()
	if show {
		b.showStorm(c, channel, st)
	}

	text := R(Sym(StatusAlert), Txt(" "), Bold("FIRING:"), Txt(" "+a.Summary()))
	if a.GeneratorURL != "" {
		text = append(text, Txt(" ("), Link(a.GeneratorURL, "source"), Txt(")"))
	}
	m := Message{Summary: text, Blocks: []Block{{Kind: KindSection, ID: "alert:" + a.Fingerprint, Text: text}}}
	c.out.add(mark{key: "root|" + a.Fingerprint, conv: channel, kind: kindPost, prio: prioNormal, ready: true,
		send: func(ctx context.Context) error {
			ref, err := c.p.Post(ctx, channel, "", m)
			var rl *RateLimitedError
			if errors.As(err, &rl) {
				return err // requeued by the outbox
			}
			var resolved *alerts.Alert
			if err == nil {
				// The thread is known before the root stops being
				// queued, so a resolution arriving now finds one or the
				// other (resolveLater).
				b.cfg.Alerts.Tracker.SetThread(a.Fingerprint, ref.Conversation, ref.ID)
			}
			b.alerts.mu.Lock()
			delete(b.alerts.rooting, a.Fingerprint)
			if r, ok := b.alerts.resolving[a.Fingerprint]; ok && err == nil {
				resolved = &r
				delete(b.alerts.resolving, a.Fingerprint)
			}
			b.alerts.mu.Unlock()
			st.mu.Lock()
			for i, w := range st.waiting {
				if w.Fingerprint == a.Fingerprint {
					st.waiting = append(st.waiting[:i], st.waiting[i+1:]...)
					break
				}
			}
			update := st.posted
			st.mu.Unlock()
			if update {
				b.showStorm(c, channel, st)
			}
			if err != nil {
				b.log.Error("cannot post an alert's thread", "alert", a.Name, "err", err)
				return err
			}
			c.out.learn(channel, ref.Conversation)
			b.goOwned(func(ctx context.Context) {
				b.handleAlert(ctx, c, a, ref.Conversation, ref.ID)
				if resolved != nil {
					// It resolved while its thread was queued: say so
					// in the thread, after the alert's own replies.
					b.handleAlert(ctx, c, *resolved, ref.Conversation, ref.ID)
				}
			})
			return nil
		}})
}

// resolveLater keeps the resolution of an alert whose thread root is
// queued, to be said in the thread once it is posted. When the root was
// posted meanwhile it returns the thread instead; when the alert has no
// thread coming, the resolution has nowhere to go and is dropped.
func (b *Bot) resolveLater(a alerts.Alert) (channel, thread string, posted bool) {
	b.alerts.mu.Lock()
	defer b.alerts.mu.Unlock()
	if b.alerts.rooting[a.Fingerprint] {
		if b.alerts.resolving == nil {
			b.alerts.resolving = map[string]alerts.Alert{}
		}
		b.alerts.resolving[a.Fingerprint] = a
		return "", "", false
	}
	// The root's send sets the thread before it stops rooting.
	return b.cfg.Alerts.Tracker.Thread(a.Fingerprint)
}

// showStorm posts or edits a channel's storm message. It is urgent while
// it is new (the first answer to the storm), an edit after.
func (b *Bot) showStorm(c *chat, channel string, st *storm) {
	st.mu.Lock()
	k := kindPost
	prio := prioUrgent
	if st.posted {
		k, prio = kindUpdate, prioNormal
	}
	st.posted = true
	st.mu.Unlock()
	c.out.add(mark{key: "storm|" + channel, conv: channel, kind: k, prio: prio, ready: true,
		send: func(ctx context.Context) error {
			st.mu.Lock()
			msg, ref, done := renderStorm(st), st.ref, len(st.waiting) == 0
			st.mu.Unlock()
			if ref.IsZero() {
				r, err := c.p.Post(ctx, channel, "", msg)
				if err != nil {
					return err
				}
				c.out.learn(channel, r.Conversation)
				st.mu.Lock()
				st.ref = r
				st.mu.Unlock()
				return nil
			}
			if err := c.p.Update(ctx, ref, msg); err != nil {
				return err
			}
			if done {
				// Every alert has its thread: the next storm gets a
				// message of its own.
				st.mu.Lock()
				if len(st.waiting) == 0 {
					st.ref, st.total, st.posted = MessageRef{}, 0, false
				}
				st.mu.Unlock()
			}
			return nil
		}})
}

// renderStorm is the storm message. Caller holds st.mu.
func renderStorm(st *storm) Message {
	text := R(Sym(StatusAlert), Txt(" "), Bold(fmt.Sprintf("Alert storm: %d alerts firing", st.total)))
	if len(st.waiting) == 0 {
		text = append(text, Txt(". Every one has its own thread now."))
	} else {
		text = append(text, Txt(fmt.Sprintf(". %d wait for their own thread, which follows as the channel's rate limit allows:", len(st.waiting))))
		for i, a := range st.waiting {
			if i == 20 {
				text = append(text, BR(), Ital(fmt.Sprintf("… and %d more", len(st.waiting)-20)))
				break
			}
			text = append(text, BR(), Txt("• "+a.Summary()))
		}
	}
	return Message{Summary: text, Blocks: []Block{{Kind: KindSection, ID: "storm", Text: text}}}
}
