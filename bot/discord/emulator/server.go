// Package emulator is a Discord emulator that speaks Discord's real wire
// protocol: the REST API under /api/v9/ and /api/v10/ (and unversioned
// /api/, as incoming-webhook URLs use), the Gateway over a WebSocket (HELLO,
// IDENTIFY, READY, GUILD_CREATE, heartbeats, RESUME with replay, INVALID
// SESSION, RECONNECT, close codes), interactions with the 3-second deadline
// and 15-minute tokens, follow-up and incoming webhooks, threads, per-route
// rate-limit buckets with Discord's headers and 429 bodies, and Discord's
// content, embed and component limits with its JSON error shape. A small
// web playground is served at /.
//
// The real discordgo client cannot tell it from Discord. Point it at the
// emulator by rewriting the scheme and host of its requests (discordgo's
// endpoint variables are fixed at init, so only the host can change):
//
//	s, _ := discordgo.New("Bot " + srv.Token())
//	s.Client = &http.Client{Transport: rewriteTo(srv.URL())}
//	s.Open() // GET /api/v9/gateway returns the emulator's ws:// URL
//
// Tests drive the human side through the Go API (RunCommand, ClickButton,
// SelectOptions, SubmitModal, Autocomplete, PostMessage, ExecuteWebhook,
// FireAlert) and observe what the bot did through the state accessors
// (Messages, Ephemerals, Modals, Interactions, AckLatencies, Calls,
// RateLimited, Identifies). WaitFor blocks until a predicate over that state
// holds, re-checking it on every change, so tests never need to sleep.
//
// Snowflakes, timestamps, the 15-minute interaction-token lifetime and rate
// limiting read Options.Now, so a test can inject a fake clock. The 3-second
// interaction deadline and gateway heartbeats run on real timers, because
// they pace a real client.
package emulator

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Intent bits the emulator checks (Discord's gateway intents).
const (
	IntentGuilds         = 1 << 0
	IntentGuildMembers   = 1 << 1 // privileged
	IntentGuildPresences = 1 << 8 // privileged
	IntentGuildMessages  = 1 << 9
	IntentDirectMessages = 1 << 12
	IntentMessageContent = 1 << 15 // privileged

	privilegedIntents = IntentGuildMembers | IntentGuildPresences | IntentMessageContent
	allIntents        = 1<<26 - 1
)

// Options configure a Server. Zero values get Discord-like defaults.
type Options struct {
	// Token is the bot token. REST calls must carry "Authorization: Bot
	// <Token>"; IDENTIFY and RESUME accept it with or without "Bot ".
	// Default "emulator-bot-token".
	Token string
	// ApplicationID is the application's ID, which is also the bot user's
	// ID (as on Discord). Minted when empty.
	ApplicationID string
	// BotName is the bot user's username; default "runbookbot".
	BotName string
	// GuildName names the guild New creates; default "Emulator".
	GuildName string

	// Addr is the listen address for Start; default "127.0.0.1:0".
	Addr string

	// HeartbeatInterval is sent in HELLO; default 41.25s like Discord. A
	// connection that sends nothing for twice the interval (plus a second)
	// is closed with 4009 (session timed out).
	HeartbeatInterval time.Duration
	// InteractionTimeout is how long after the event an interaction may be
	// answered; default 3s. Later callbacks get 404 Unknown interaction
	// (10062) and the user sees "This interaction failed". Real time.
	InteractionTimeout time.Duration
	// TokenTTL is how long an interaction token works for follow-ups and
	// edits, measured with Now; default 15 minutes. Later calls get 401
	// Invalid Webhook Token (50027).
	TokenTTL time.Duration
	// DeniedIntents are privileged intents NOT enabled for the application
	// in the Developer Portal. Identifying with one of them closes the
	// gateway with 4014 (disallowed intents). Without MESSAGE_CONTENT the
	// REST API also blanks other authors' message content. Zero: all
	// privileged intents enabled.
	DeniedIntents int

	// RateLimit configures per-route buckets and the global limit. Rate
	// limiting is ON by default.
	RateLimit RateLimitOptions

	// Now is the clock for snowflakes, timestamps, token expiry and rate
	// limits; default time.Now.
	Now func() time.Time
	// Logf, when set, receives a line per request and gateway event.
	Logf func(format string, args ...any)
}

// Server is a running (or ready to start) Discord emulator. All methods are
// safe for concurrent use.
type Server struct {
	opts Options
	now  func() time.Time

	mu      sync.Mutex
	changed chan struct{}

	lastSnowflake uint64
	guildID       string // the default guild

	users        map[string]*User
	userOrder    []string
	guilds       map[string]*Guild
	guildOrder   []string
	roles        map[string]*Role
	roleOrder    []string
	channels     map[string]*channel
	chanOrder    []string
	ephemerals   map[string][]*Message // user ID → ephemeral messages
	modals       []*Modal
	commands     map[string]*command // ID → command
	commandOrder []string
	interactions map[string]*interaction
	intOrder     []string
	byToken      map[string]*interaction
	webhooks     map[string]*webhook
	webhookOrder []string

	calls       map[string]int
	rateLimited int
	globalHits  int
	limiter     *limiter

	gw gatewayState

	ln     net.Listener
	srv    *http.Server
	url    string
	closed bool
	down   bool
}

// New returns a Server with defaults applied, the bot user and one guild
// (with its @everyone role) registered. Call Start to listen.
func New(o Options) *Server {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.Token, "emulator-bot-token")
	o.Token = strings.TrimPrefix(o.Token, "Bot ")
	def(&o.BotName, "runbookbot")
	def(&o.GuildName, "Emulator")
	def(&o.Addr, "127.0.0.1:0")
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 41250 * time.Millisecond
	}
	if o.InteractionTimeout <= 0 {
		o.InteractionTimeout = 3 * time.Second
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		opts:         o,
		now:          o.Now,
		changed:      make(chan struct{}),
		users:        map[string]*User{},
		guilds:       map[string]*Guild{},
		roles:        map[string]*Role{},
		channels:     map[string]*channel{},
		ephemerals:   map[string][]*Message{},
		commands:     map[string]*command{},
		interactions: map[string]*interaction{},
		byToken:      map[string]*interaction{},
		webhooks:     map[string]*webhook{},
		calls:        map[string]int{},
		limiter:      newLimiter(o.RateLimit),
	}
	s.gw.init()
	s.mu.Lock()
	if s.opts.ApplicationID == "" {
		s.opts.ApplicationID = s.snowflakeLocked()
	}
	s.mu.Unlock()
	s.AddUser(User{ID: s.opts.ApplicationID, Username: s.opts.BotName, Bot: true})
	s.guildID = s.AddGuild(o.GuildName)
	return s
}

// Options returns the effective options (defaults filled in).
func (s *Server) Options() Options { return s.opts }

// Token returns the bot token (without "Bot "). discordgo wants
// discordgo.New("Bot " + srv.Token()).
func (s *Server) Token() string { return s.opts.Token }

// ApplicationID returns the application ID, which is also the bot user's ID.
func (s *Server) ApplicationID() string { return s.opts.ApplicationID }

// BotUserID returns the bot user's ID (the application ID).
func (s *Server) BotUserID() string { return s.opts.ApplicationID }

// GuildID returns the ID of the guild New created.
func (s *Server) GuildID() string { return s.guildID }

// Handler returns the emulator's HTTP handler, for mounting it elsewhere.
// URLs the emulator hands out (gateway, webhooks) are built from URL(), so
// Start must have been called, or use SetURL.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.handleAPI)
	mux.HandleFunc("/gateway", s.handleGateway)
	mux.HandleFunc("/gateway/", s.handleGateway)
	mux.HandleFunc("/emu/", s.handleUIAPI)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			s.handleGateway(w, r) // Discord's gateway URL has no path
			return
		}
		s.handleUIPage(w, r)
	})
	return mux
}

// SetURL sets the externally visible base URL (ending in '/') when the
// Handler is served by someone else instead of Start.
func (s *Server) SetURL(base string) {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.url = base
}

// Start listens on Options.Addr and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("discordemu: listen: %w", err)
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

// URL returns the base URL, e.g. "http://127.0.0.1:40123/": what replaces
// "https://discord.com/" for a client.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// APIURL returns URL()+"api/v9/", the value of discordgo's EndpointAPI.
func (s *Server) APIURL() string { return s.URL() + "api/v9/" }

// GatewayURL returns the WebSocket URL that GET /gateway hands out,
// e.g. "ws://127.0.0.1:40123".
func (s *Server) GatewayURL() string {
	return strings.TrimSuffix("ws"+strings.TrimPrefix(s.URL(), "http"), "/")
}

// Close drops all gateway connections, stops interaction timers and shuts
// the HTTP server down.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.gw.stopLocked()
	for _, in := range s.interactions {
		if in.timer != nil {
			in.timer.Stop()
		}
	}
	srv := s.srv
	s.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
	var err error
	if srv != nil {
		err = srv.Close()
	}
	s.mu.Lock()
	s.down = true
	s.notifyLocked()
	s.mu.Unlock()
	return err
}

// Closed reports whether Close has finished.
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
// (message stored, callback received, connection opened …). Call it again
// after it fires to wait for the following change.
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
			return fmt.Errorf("discordemu: condition not met: %w", ctx.Err())
		}
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf("discordemu: "+format, args...)
	}
}
