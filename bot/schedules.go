package bot

import (
	"context"
	"errors"
	"sort"

	"github.com/runbookbot/runbookbot/commands"
	"github.com/runbookbot/runbookbot/commands/schedule"
)

// Schedules is what `/runbook schedules` needs from the scheduler;
// *schedule.Scheduler implements it.
type Schedules interface {
	List(ctx context.Context) ([]schedule.Status, error)
	Pause(ctx context.Context, runbook, user string) error
	Resume(ctx context.Context, runbook, user string) error
}

var _ Schedules = (*schedule.Scheduler)(nil)

// schedules answers `/runbook schedules [pause|resume NAME]`: listing
// needs runbooks:list, pausing and resuming schedules:manage (refusals
// are answered and audited like every other).
func (b *Bot) schedules(ctx context.Context, user string, cmd commands.Command) Response {
	s := b.cfg.Schedules
	if s == nil {
		return reply(R(Sym(StatusInfo), Txt(" This bot runs no schedules.")))
	}
	if cmd.Action == "" {
		if r, ok := b.allowed(ctx, user, commands.PermList, "list runbooks"); !ok {
			return r
		}
		return b.listSchedules(ctx, s)
	}
	action := cmd.Action + " schedules"
	if r, ok := b.allowed(ctx, user, schedule.PermManage, action); !ok {
		return r
	}
	var err error
	if cmd.Action == commands.ActionPause {
		err = s.Pause(ctx, cmd.Target, user)
	} else {
		err = s.Resume(ctx, cmd.Target, user)
	}
	switch {
	case errors.Is(err, schedule.ErrUnknown):
		return reply(R(Sym(StatusQuestion), Txt(" "), Code(cmd.Target), Txt(" is not a runbook with a schedule. See "), Code("/runbook schedules"), Txt(".")))
	case errors.Is(err, schedule.ErrNotAllowed):
		return b.refuse(user, action, R(Txt("You are not allowed to "+action+" (needs "), Code(schedule.PermManage), Txt("). Ask a runbook admin to grant it.")))
	case err != nil:
		b.log.Error("cannot "+cmd.Action+" a schedule", "runbook", cmd.Target, "user", user, "err", err)
		return reply(R(Sym(StatusWarning), Txt(" Could not "+cmd.Action+" the schedule of "), Code(cmd.Target), Txt(" right now; try again shortly.")))
	}
	if cmd.Action == commands.ActionPause {
		return reply(R(Sym(StatusStop), Txt(" Paused the schedule of "), Bold(cmd.Target), Txt(" on every replica: it runs again after "),
			Code("/runbook schedules resume "+cmd.Target), Txt(".")))
	}
	text := R(Sym(StatusOK), Txt(" Resumed the schedule of "), Bold(cmd.Target), Txt("; ticks missed while paused are not run."))
	if rows, err := s.List(ctx); err == nil {
		for _, r := range rows {
			if r.Runbook == cmd.Target && !r.Next.IsZero() {
				text = append(text, Txt(" Next run: "), At(r.Next), Txt("."))
			}
		}
	}
	return reply(text)
}

// listSchedules shows every scheduled runbook with its next run, and who
// paused it when.
func (b *Bot) listSchedules(ctx context.Context, s Schedules) Response {
	rows, err := s.List(ctx)
	if err != nil {
		b.log.Error("listing schedules", "err", err)
		return reply(R(Sym(StatusWarning), Txt(" Could not read the schedules right now; try again shortly.")))
	}
	if len(rows) == 0 {
		return reply(R(Txt("No runbook has a schedule.")))
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Runbook < rows[j].Runbook })
	text := R(Bold("Schedules"))
	for _, r := range rows {
		text = append(text, BR(), Txt("• "), Bold(r.Runbook), Txt(" "), Code(r.Schedule))
		if r.Timezone != "" {
			text = append(text, Txt(" ("+r.Timezone+")"))
		}
		switch {
		case r.Paused:
			text = append(text, Txt(" — "), Sym(StatusStop), Txt(" paused"))
			if r.PausedBy != "" {
				text = append(text, Txt(" by "), Mention(r.PausedBy))
			}
			if r.PausedAt != nil {
				text = append(text, Txt(" at "), At(*r.PausedAt))
			}
			if !r.Next.IsZero() {
				text = append(text, Txt(" · next tick "), At(r.Next), Txt(" (skipped while paused)"))
			}
		case r.Next.IsZero():
			text = append(text, Txt(" — never runs again"))
		default:
			text = append(text, Txt(" — next run "), At(r.Next))
		}
	}
	return reply(text)
}
