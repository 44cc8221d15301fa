package redis

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/runbookbot/runbookbot/engine"
)

// DefaultPrefix is the key prefix used when WithPrefix is not given.
const DefaultPrefix = "runbookbot:"

// NewClient opens a go-redis UniversalClient for one of the URL forms
// described in the package documentation:
//
//	redis://[user:pass@]host:port[/db][?go-redis options]       single server
//	rediss://...                                                 single server over TLS
//	redis+sentinel://[user:pass@]s1:26379,s2:26379[/db]?master=NAME
//	redis+cluster://[user:pass@]n1:7000,n2:7001
//
// The "rediss+sentinel" and "rediss+cluster" schemes use TLS. A plain
// redis:// or rediss:// URL that carries a master parameter is a Sentinel
// URL, and one that carries addrs (but no master) is a Cluster URL, so
// redis://s1:26379?master=mymaster&addrs=s2:26379 also works. The client is
// not pinged; callers that want to fail fast call Ping.
func NewClient(rawURL string) (goredis.UniversalClient, error) {
	u, hosts, err := parseMultiHost(rawURL)
	if err != nil {
		return nil, err
	}
	base, mode, _ := strings.Cut(u.Scheme, "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("redis: unsupported URL scheme %q", u.Scheme)
	}
	q := u.Query()
	switch {
	case mode == "" && !q.Has("master") && !q.Has("addrs"):
		opt, err := goredis.ParseURL(rawURL)
		if err != nil {
			return nil, err
		}
		opt.MaintNotificationsConfig = disabledMaint()
		return goredis.NewClient(opt), nil
	case mode == "sentinel", mode == "" && q.Has("master"):
		opt, err := universalOptions(u, hosts, base == "rediss", true)
		if err != nil {
			return nil, err
		}
		if opt.MasterName == "" {
			return nil, fmt.Errorf("redis: sentinel URL needs a master parameter")
		}
		return goredis.NewFailoverClient(opt.Failover()), nil
	case mode == "cluster", mode == "" && q.Has("addrs"):
		opt, err := universalOptions(u, hosts, base == "rediss", false)
		if err != nil {
			return nil, err
		}
		if opt.MasterName != "" {
			return nil, fmt.Errorf("redis: cluster URL cannot name a master")
		}
		if opt.DB != 0 {
			return nil, fmt.Errorf("redis: cluster has no database %d", opt.DB)
		}
		return goredis.NewClusterClient(opt.Cluster()), nil
	default:
		return nil, fmt.Errorf("redis: unsupported URL scheme %q", u.Scheme)
	}
}

func disabledMaint() *maintnotifications.Config {
	return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// parseMultiHost parses a URL whose host part may list several
// comma-separated hosts, which url.Parse does not accept: the hosts are cut
// out first and returned apart, and the URL is parsed with the first one.
func parseMultiHost(rawURL string) (*url.URL, []string, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, nil, fmt.Errorf("redis: URL %q has no scheme", rawURL)
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	user, hostList := "", authority
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		user, hostList = authority[:at+1], authority[at+1:]
	}
	var hosts []string
	if hostList != "" {
		hosts = strings.Split(hostList, ",")
	}
	first := ""
	if len(hosts) > 0 {
		first = hosts[0]
	}
	u, err := url.Parse(scheme + "://" + user + first + rest[end:])
	if err != nil {
		return nil, nil, fmt.Errorf("redis: parse URL: %w", err)
	}
	return u, hosts, nil
}

// universalOptions turns a Sentinel or Cluster URL into UniversalOptions.
func universalOptions(u *url.URL, hosts []string, useTLS, sentinel bool) (*goredis.UniversalOptions, error) {
	opt := &goredis.UniversalOptions{MaintNotificationsConfig: disabledMaint()}
	if u.User != nil {
		opt.Username = u.User.Username()
		opt.Password, _ = u.User.Password()
	}
	if len(hosts) > 0 {
		for _, h := range hosts {
			a, err := normalizeAddr(h, sentinel)
			if err != nil {
				return nil, err
			}
			opt.Addrs = append(opt.Addrs, a)
		}
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		db, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("redis: invalid database number %q", p)
		}
		opt.DB = db
	}
	skipVerify := false
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		var err error
		switch k {
		case "master", "master_name":
			opt.MasterName = v
		case "addrs", "addr":
			for _, v := range vs {
				for _, h := range strings.Split(v, ",") {
					a, aerr := normalizeAddr(h, sentinel)
					if aerr != nil {
						return nil, aerr
					}
					opt.Addrs = append(opt.Addrs, a)
				}
			}
		case "db":
			opt.DB, err = strconv.Atoi(v)
		case "sentinel_username":
			opt.SentinelUsername = v
		case "sentinel_password":
			opt.SentinelPassword = v
		case "client_name":
			opt.ClientName = v
		case "pool_size":
			opt.PoolSize, err = strconv.Atoi(v)
		case "max_retries":
			opt.MaxRetries, err = strconv.Atoi(v)
		case "dial_timeout":
			opt.DialTimeout, err = parseDuration(v)
		case "read_timeout":
			opt.ReadTimeout, err = parseDuration(v)
		case "write_timeout":
			opt.WriteTimeout, err = parseDuration(v)
		case "route_by_latency":
			opt.RouteByLatency, err = strconv.ParseBool(v)
		case "route_randomly":
			opt.RouteRandomly, err = strconv.ParseBool(v)
		case "skip_verify":
			skipVerify, err = strconv.ParseBool(v)
		default:
			return nil, fmt.Errorf("redis: unexpected URL option %q", k)
		}
		if err != nil {
			return nil, fmt.Errorf("redis: URL option %s: %w", k, err)
		}
	}
	if len(opt.Addrs) == 0 {
		return nil, fmt.Errorf("redis: URL names no address")
	}
	if useTLS {
		host, _, _ := net.SplitHostPort(opt.Addrs[0])
		opt.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: skipVerify}
	}
	return opt, nil
}

// normalizeAddr adds the default port (26379 for Sentinel, 6379 otherwise).
func normalizeAddr(h string, sentinel bool) (string, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return "", fmt.Errorf("redis: empty address in URL")
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h, nil
	}
	port := "6379"
	if sentinel {
		port = "26379"
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), port), nil
}

// parseDuration accepts a Go duration or a plain number of seconds, as
// go-redis' own URL options do.
func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// isCluster reports whether c routes keys by hash slot, in which case every
// key a script touches must share one hash tag.
func isCluster(c goredis.UniversalClient) bool {
	_, ok := c.(*goredis.ClusterClient)
	return ok
}

// clusterSafePrefix gives the prefix a hash tag when the client is a Cluster
// client and the prefix has none, so that all keys of a store land in one
// slot: "runbookbot:" becomes "{runbookbot}:".
func clusterSafePrefix(prefix string, cluster bool) string {
	if !cluster || hasHashTag(prefix) {
		return prefix
	}
	return "{" + strings.TrimSuffix(prefix, ":") + "}:"
}

func hasHashTag(key string) bool {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(key[i+1:], '}')
	return j > 0
}

// Option configures a Store.
type Option func(*storeConfig)

type storeConfig struct {
	prefix    string
	logger    *slog.Logger
	cacheSize int
	clock     engine.Clock
}

func defaultStoreConfig() storeConfig {
	return storeConfig{prefix: DefaultPrefix, logger: slog.Default(), cacheSize: 4096, clock: engine.SystemClock{}}
}

// WithLeaseClock sets the clock that times Hold's lease renewals (default
// engine.SystemClock). Lease TTLs themselves are kept by Redis.
func WithLeaseClock(c engine.Clock) Option {
	return func(cfg *storeConfig) {
		if c != nil {
			cfg.clock = c
		}
	}
}

// WithPrefix sets the prefix of every key the store writes (default
// "runbookbot:"). Stores that share a Redis but not their data use
// different prefixes.
func WithPrefix(prefix string) Option {
	return func(c *storeConfig) { c.prefix = prefix }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *storeConfig) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithSummaryCache sets how many running executions' summaries the store
// keeps in memory so that an append costs one round trip instead of two
// (default 4096; 0 disables the cache). The cache is only a hint: the
// append script checks it against Redis and the store reloads on mismatch,
// so replicas sharing the data stay correct.
func WithSummaryCache(n int) Option {
	return func(c *storeConfig) { c.cacheSize = n }
}

// keys names every key of one store.
type keys struct{ p string }

func (k keys) pos() string                 { return k.p + "pos" }
func (k keys) log() string                 { return k.p + "log" }
func (k keys) unfinished() string          { return k.p + "unfinished" }
func (k keys) events(id string) string     { return k.p + "ev:" + id }
func (k keys) summary(id string) string    { return k.p + "sum:" + id }
func (k keys) lease(id string) string      { return k.p + "lease:" + id }
func (k keys) byTime() string              { return k.p + "idx:time" }
func (k keys) byRunbook(v string) string   { return k.p + "idx:rb:" + v }
func (k keys) byOutcome(v string) string   { return k.p + "idx:out:" + v }
func (k keys) byRequester(v string) string { return k.p + "idx:by:" + v }
func (k keys) byTrigger(v string) string   { return k.p + "idx:trig:" + v }
