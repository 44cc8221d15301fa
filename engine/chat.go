package engine

import (
	"context"
	"fmt"
)

// RecordRefusal records in an execution's audit log (as approval.refused,
// level warning) that a chat action on it was refused before it reached
// the engine: a button the bot never issued, a forged value. It reports
// false, recording nothing, when the execution is not driven by this
// engine (finished, or running on another replica); callers then keep the
// refusal in their own log.
func (e *Engine) RecordRefusal(ctx context.Context, executionID, user, message string) (bool, error) {
	e.mu.Lock()
	x := e.runs[executionID]
	e.mu.Unlock()
	if x == nil {
		return false, nil
	}
	select {
	case <-x.done:
		return false, nil
	default:
	}
	if _, err := x.emit(Event{Type: EventApprovalRefused, Actor: user, AuditLevel: "warning", Message: message}); err != nil {
		return false, fmt.Errorf("recording a refusal: %w", err)
	}
	return true, nil
}
