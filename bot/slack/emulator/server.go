// Package emulator is a Slack emulator that speaks Slack's real wire
// protocol: the Web API under /api/, Socket Mode over a WebSocket (hello,
// server pings, envelopes, acks, retries, disconnect), incoming webhooks
// under /services/, response_url endpoints under /hooks/, and a small web UI
// at /. The real slack-go client, pointed at it with
//
//	api := slack.New(botToken,
//		slack.OptionAPIURL(srv.URL()+"api/"),
//		slack.OptionAppLevelToken(appToken))
//	client := socketmode.New(api)
//
// cannot tell it from Slack. Tests drive the human side through the Go API
// (SlashCommand, ClickButton, SubmitView, PostMessage, AddWebhook …) and
// observe what the bot did through the state accessors (Messages, Replies,
// Ephemerals, Views, AckLatencies, Calls, RateLimited, ProtocolErrors).
// Slack's rate limits (DefaultLimits) are on unless turned off, so
// benchmarks run against the real budget. WaitFor blocks until
// a predicate over that state holds, re-checking it on every change, so tests
// never need to sleep.
//
// Timestamps, trigger expiry and rate limiting read Options.Now, so a test
// can inject a fake clock. Ack timeouts, retries and pings run on real
// timers, because they pace a real client.
package emulator

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Options configure a Server. Zero values get Slack-like defaults.
type Options struct {
	BotToken   string // default "xoxb-emulator-bot-token"
	AppToken   string // default "xapp-1-emulator-app-token"
	BotUserID  string // default "U0BOTUSER01"
	BotID      string // default "B0BOTAPP001"
	BotName    string // default "runbookbot"
	AppID      string // default "A0RUNBOOK01"
	TeamID     string // default "T0EMULATOR"
	TeamDomain string // default "emulator"
	TeamName   string // default "Emulator"
	Command    string // slash command sent by SlashCommand; default "/runbook"

	// Addr is the listen address for Start; default "127.0.0.1:0".
	Addr string

	// RateLimit configures HTTP 429 answers. Rate limiting is ON by default.
	RateLimit RateLimitOptions

	// AckTimeout is how long an envelope may stay un-acked before it is
	// redelivered with retry_attempt+1 and retry_reason "timeout"; default 3s.
	AckTimeout time.Duration
	// MaxRetries is how many redeliveries follow the first delivery;
	// default 3 (like Slack). Negative disables redelivery.
	MaxRetries int
	// RetryInteractions also redelivers slash_commands and interactive
	// envelopes. Real Slack only redelivers events_api envelopes.
	RetryInteractions bool
	// PingInterval is how often the server pings each socket; default 5s.
	PingInterval time.Duration
	// TriggerTTL is how long a trigger_id stays valid for views.open;
	// default 3s like Slack, negative means forever.
	TriggerTTL time.Duration

	// EchoBotMessages makes the bot's own chat.postMessage/chat.update
	// produce message / message_changed events (as when the app subscribes
	// to message.channels). Off by default.
	EchoBotMessages bool
	// AppMentionEvents also emits an app_mention event when a human message
	// mentions the bot. Off by default.
	AppMentionEvents bool

	// Now is the clock for ts values, trigger expiry and rate limiting;
	// default time.Now.
	Now func() time.Time
	// Logf, when set, receives a line per request and socket event.
	Logf func(format string, args ...any)
}

// Server is a running (or ready to start) Slack emulator. All methods are
// safe for concurrent use.
type Server struct {
	opts Options
	now  func() time.Time

	mu      sync.Mutex
	changed chan struct{}

	users        map[string]*User
	userOrder    []string
	groups       map[string]*UserGroup
	groupOrder   []string
	channels     map[string]*channel
	chanOrder    []string
	ephemerals   map[string][]Ephemeral
	views        map[string]*viewState
	viewOrder    []string
	triggers     map[string]*trigger
	responseURLs map[string]*responseURL
	webhooks     map[string]*webhook
	webhookOrder []string
	seq          int
	lastTS       int64
	calls        map[string]int
	rateLimited  int
	limiter      *limiter

	sock socketState

	ln     net.Listener
	srv    *http.Server
	url    string
	closed bool // Close started: no more deliveries
	down   bool // Close finished
}

// New returns a Server with defaults applied and the bot user registered.
// Call Start to listen.
func New(o Options) *Server {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.BotToken, "xoxb-emulator-bot-token")
	def(&o.AppToken, "xapp-1-emulator-app-token")
	def(&o.BotUserID, "U0BOTUSER01")
	def(&o.BotID, "B0BOTAPP001")
	def(&o.BotName, "runbookbot")
	def(&o.AppID, "A0RUNBOOK01")
	def(&o.TeamID, "T0EMULATOR")
	def(&o.TeamDomain, "emulator")
	def(&o.TeamName, "Emulator")
	def(&o.Command, "/runbook")
	def(&o.Addr, "127.0.0.1:0")
	if o.AckTimeout <= 0 {
		o.AckTimeout = 3 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 3
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 5 * time.Second
	}
	if o.TriggerTTL == 0 {
		o.TriggerTTL = 3 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		opts:         o,
		now:          o.Now,
		changed:      make(chan struct{}),
		users:        map[string]*User{},
		groups:       map[string]*UserGroup{},
		channels:     map[string]*channel{},
		ephemerals:   map[string][]Ephemeral{},
		views:        map[string]*viewState{},
		triggers:     map[string]*trigger{},
		responseURLs: map[string]*responseURL{},
		webhooks:     map[string]*webhook{},
		calls:        map[string]int{},
		limiter:      newLimiter(o.RateLimit),
	}
	s.sock.init()
	s.AddUser(User{ID: o.BotUserID, Name: o.BotName, RealName: o.BotName, IsBot: true})
	return s
}

// Options returns the effective options (defaults filled in).
func (s *Server) Options() Options { return s.opts }

// BotToken returns the bot token the Web API accepts.
func (s *Server) BotToken() string { return s.opts.BotToken }

// AppToken returns the app-level token apps.connections.open accepts.
func (s *Server) AppToken() string { return s.opts.AppToken }

// Handler returns the emulator's HTTP handler, for mounting it elsewhere.
// URLs the emulator hands out (socket, response_url, webhooks) are built
// from URL(), so Start must have been called, or use SetURL.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.handleAPI)
	mux.HandleFunc("/link/", s.handleSocket)
	mux.HandleFunc("/services/", s.handleWebhook)
	mux.HandleFunc("/hooks/", s.handleResponseURL)
	mux.HandleFunc("/archives/", s.handleArchive)
	mux.HandleFunc("/emu/", s.handleUIAPI)
	mux.HandleFunc("/{$}", s.handleUIPage)
	return mux
}

// SetURL sets the externally visible base URL (ending in '/') when the
// Handler is served by someone else instead of Start.
func (s *Server) SetURL(base string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.url = base
}

// Start listens on Options.Addr and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("slackemu: listen: %w", err)
	}
	s.mu.Lock()
	s.ln = ln
	s.url = "http://" + ln.Addr().String() + "/"
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	srv := s.srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// URL returns the base URL, e.g. "http://127.0.0.1:40123/". The Web API is
// at URL()+"api/".
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// APIURL returns URL()+"api/", the value for slack.OptionAPIURL.
func (s *Server) APIURL() string { return s.URL() + "api/" }

// Close drops all sockets, stops retry timers and shuts the HTTP server down.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.sock.stopLocked()
	srv := s.srv
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	var err error
	if srv != nil {
		err = srv.Close()
	}
	s.mu.Lock()
	s.down = true
	s.notifyLocked() // after the listener is gone, so waiters see a closed server
	s.mu.Unlock()
	return err
}

// Closed reports whether Close has finished: sockets dropped, listener closed.
func (s *Server) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// notifyLocked wakes every waiter. Caller holds s.mu.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Changed returns a channel that is closed at the next state change
// (message stored, ack received, connection opened …). Call it again after
// it fires to wait for the following change.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// WaitFor blocks until cond returns true, re-evaluating it after every state
// change, or until ctx is done. cond may call the Server's accessors.
func (s *Server) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		ch := s.Changed()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("slackemu: condition not met: %w", ctx.Err())
		}
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf("slackemu: "+format, args...)
	}
}
