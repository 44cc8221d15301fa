// Package redis keeps runbookbot's state in Redis and ships its audit trail
// to a Redis Stream.
//
// It has three parts:
//
//   - Store, an engine.Store that several bot replicas can share;
//   - leases on Store (Acquire, Renew, Release), so that only one replica
//     drives a given execution and a dead replica's executions can be taken
//     over once its lease expires; AcquireAll, RenewAll and ReleaseAll do
//     the same for thousands of executions in a few round trips, and
//     EventsOf reads their logs pipelined (the engine uses both to take a
//     restart's executions over at once);
//   - Mirror, which copies the events of any engine.Store to an audit
//     stream (XADD, one entry per event) exactly once, for security teams.
//
// # Usage
//
//	store, err := redis.NewStore(ctx, "redis://bot:secret@redis:6379/0")
//	if err != nil { ... }
//	defer store.Close()
//
//	// Audit: ship every event to runbookbot:audit; wake the mirror after
//	// each append (or let it poll every second).
//	mirror := redis.NewMirror(store, store.Client())
//	go mirror.Run(ctx)
//	... store.Append(ctx, ev); mirror.Notify() ...
//
//	// Replicas: drive an execution only while holding its lease.
//	lease, err := store.Hold(ctx, execID, hostname+"/"+pid, 30*time.Second)
//	if errors.Is(err, redis.ErrLeaseHeld) { return } // another replica drives it
//	defer lease.Release(ctx)
//	select { case <-lease.Lost(): stop driving ... }
//
// A process that stops (serve on shutdown, the run command before it exits)
// calls Flush with a deadline, or gives Run WithFlushOnStop, so that the
// stream holds everything stored before it goes.
//
// The mirror's source can be any engine.Store (a file store, say) and its
// client any Redis, for example the security team's own:
// redis.NewMirror(fileStore, auditClient, redis.WithMaxLen(1_000_000)).
// Unfinished executions found at start-up (Store.Unfinished) are resumed by
// whichever replica acquires their lease first.
//
// # Connecting
//
// NewStore and NewClient take a URL:
//
//	redis://[user:pass@]host:6379[/db][?go-redis options]
//	rediss://[user:pass@]host:6380[/db]         TLS
//	redis+sentinel://[user:pass@]s1:26379,s2:26379[/db]?master=mymaster
//	redis+cluster://[user:pass@]n1:7000,n2:7001,n3:7002
//
// Single-server URLs accept every option of go-redis' ParseURL
// (dial_timeout, pool_size, ...). For Sentinel and Cluster the hosts are
// comma separated (a missing port means 26379 for Sentinel, 6379 else), the rediss+sentinel and rediss+cluster schemes use TLS, and the options
// are master (Sentinel master name), addrs (more hosts, repeatable or comma
// separated), db, sentinel_username, sentinel_password, client_name,
// pool_size, max_retries, dial_timeout, read_timeout, write_timeout,
// route_by_latency, route_randomly and skip_verify. A redis:// URL with a
// master parameter is also a Sentinel URL, and one with addrs but no master
// a Cluster URL: redis://s1:26379?master=mymaster&addrs=s2:26379.
//
// # Keys
//
// With the default prefix "runbookbot:" a store uses:
//
//	runbookbot:pos                 STRING  last Pos assigned (INCRBY)
//	runbookbot:log                 STREAM  global log, entry id "<pos>-0", fields e=<execution id> s=<seq>
//	runbookbot:ev:<id>             LIST    the execution's events as JSON (with pos), index seq-1
//	runbookbot:sum:<id>            STRING  the execution's engine.Summary as JSON
//	runbookbot:unfinished          SET     executions without execution.finished
//	runbookbot:idx:time            ZSET    every execution, scored by StartedAt (Unix µs)
//	runbookbot:idx:rb:<runbook>    ZSET    by runbook name, same score
//	runbookbot:idx:out:<outcome>   ZSET    by outcome (once finished)
//	runbookbot:idx:by:<requester>  ZSET    by trigger.triggeredBy
//	runbookbot:idx:trig:<type>     ZSET    by trigger type
//	runbookbot:lease:<id>          STRING  lease owner, with a TTL (PX)
//
// and the mirror, by default:
//
//	runbookbot:audit               STREAM  audit entries (see AuditFields)
//	{runbookbot:audit}:cursor      STRING  last Pos shipped
//
// Each Append is one Lua script call: it checks that every execution's
// stored event count is the Seq its new events continue from, assigns Pos
// with INCRBY, appends the events and log entries, and writes summaries,
// indexes and the unfinished set, all atomically. Summaries are folded in
// Go with engine.Summary.Apply; the script's check makes that safe against
// concurrent writers. History intersects the indexes in a Lua script and
// filters the summaries with engine.HistoryQuery.Match.
//
// On Redis Cluster every key a script touches must be in one hash slot, so
// a prefix without a hash tag is given one: "runbookbot:" becomes
// "{runbookbot}:" (Store.Prefix tells). A whole store then lives on one
// shard; run one store per tenant or prefix to spread load.
//
// # Durability
//
// Append returns once Redis has applied the script. Whether that survives a
// crash is the server's configuration: run it with appendonly yes, and
// appendfsync always for no loss at all (everysec may lose the last second).
// The mirror's cursor moves in the same MULTI/EXEC as its stream entries, so
// even a lost tail of the append-only file leaves them consistent.
package redis
