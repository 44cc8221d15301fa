package schedule

import "github.com/runbookbot/runbookbot/engine"

// Params returns the parameters a scheduled run of rb is given: the
// runbook's trigger.parameters (the others take their defaults). Lint
// (the engine) refuses a schedule runbook with a required parameter that
// neither supplies.
func Params(rb *engine.Runbook) map[string]any {
	out := make(map[string]any, len(rb.Trigger.Parameters))
	for k, v := range rb.Trigger.Parameters {
		out[k] = v
	}
	return out
}
