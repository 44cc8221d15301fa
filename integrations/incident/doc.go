// Package incident writes runbook executions into an incident's timeline,
// as the seed article's attach_to_incident does: it attaches each execution
// to an incident, adds a timeline entry for the start, every finished step
// (with its status), every approval request and decision (who, comment),
// rollbacks and the outcome; on success it resolves the incident
// (resolution_type automated), on failure or rollback it adds the note
// "Automated remediation failed, manual intervention required" and
// escalates it.
//
// # Which incident
//
// The trigger names it, in this order: an `incident` parameter (the
// provider's incident id), a `dedup_key` or `pagerduty_dedup_key`
// parameter or alert label (the PagerDuty dedup key, PagerDuty's
// incident_key), the alert's fingerprint. The last two are looked up among
// open incidents; when none is found, or nothing names one, an incident is
// created (Config.Create, default on) with the key it was looked up by, or
// runbookbot-<executionId>.
//
// # Driven by the event log, exactly once
//
// A Timeline is a reader of the engine's event log with a durable cursor
// (a Checkpoints document, kept in a file beside the embedded store or in
// Redis beside the Redis store), like the audit mirror. Each event becomes
// a short list of operations (attach, note, resolve, escalate). Before an
// operation is sent, the checkpoint records it as in flight; after, as
// done. After a crash the operation in flight is reconciled before
// anything else: attaching looks the incident up before creating one (by
// the key it creates it with), a note is looked for by the marker every
// note carries ("[runbookbot <execution>#<seq>.<op>]"), resolving an
// incident that is resolved already counts as done. So a crash neither
// loses nor duplicates a timeline entry. Checkpoint writes are
// compare-and-set: replicas sharing one checkpoint take turns, and an
// operation another replica has in flight is left to it until
// Options.IntentTTL has passed. The generic webhook cannot be asked what
// it received: its deliveries carry an Idempotency-Key header that stays
// the same across retries and restarts, for the receiver to drop
// repeats.
//
// # Failures
//
// Answers that may succeed later (429, 5xx, 408, transport errors, 401 and
// 403: a token being fixed) are retried with backoff on the injected
// clock, honouring PagerDuty's ratelimit-reset; the cursor does not move,
// so nothing is lost. An answer that will not change (400, 404: an
// incident deleted, an escalation level the policy lacks) is logged,
// counted (Stats.Dropped) and the operation skipped.
//
// # Secrets
//
// Tokens, webhook URLs and header values may be ${env:NAME} or
// ${secret:NAME} references. What they resolve to never appears in an
// error, a log line or a timeline entry: errors name the provider, the
// method, the URL's scheme and host and PagerDuty's error code and message,
// scrubbed of every resolved value.
package incident
