// Package engine holds the runbook model, its loader and linter, templates
// and conditions, the executor state machine with approval gates and
// rollback, dry-run plans and the event model every other part reads.
//
// The engine knows nothing of chat platforms, Redis or Kubernetes: it
// declares the interfaces it consumes (Action, Store, Clock, Approvers,
// SecretSource, Resolver) and outside packages implement them.
package engine
