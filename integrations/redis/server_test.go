package redis

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The tests run against real redis-server processes on loopback ports. When
// the binary is missing they skip, unless RUNBOOKBOT_REQUIRE_REDIS is set,
// in which case they fail (CI installs it with test/redis.sh).

const requireEnv = "RUNBOOKBOT_REQUIRE_REDIS"

// redisBinary returns the path of redis-server, or skips/fails tb.
func redisBinary(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		return bin
	}
	if os.Getenv(requireEnv) != "" {
		tb.Fatalf("redis-server not found in PATH and %s is set; install it with test/redis.sh", requireEnv)
	}
	tb.Skipf("redis-server not found in PATH: skipping (install it with test/redis.sh; set %s=1 to make this a failure)", requireEnv)
	return ""
}

// redisServer is one redis-server process with its own data directory.
type redisServer struct {
	bin, dir string
	port     int
	head     []string // arguments before the options (a config file)
	extra    []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *bytes.Buffer
}

// startRedis starts a server for one test and stops it when the test ends.
// extra are more redis-server arguments (e.g. "--appendonly", "yes").
func startRedis(tb testing.TB, extra ...string) *redisServer {
	tb.Helper()
	s, err := newRedisServer(redisBinary(tb), tb.TempDir(), extra...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Kill)
	return s
}

func newRedisServer(bin, dir string, extra ...string) (*redisServer, error) {
	return launch(&redisServer{bin: bin, dir: dir, extra: extra})
}

// launch starts s on a free port.
func launch(s *redisServer) (*redisServer, error) {
	var err error
	for try := 0; try < 5; try++ { // a free port can be taken before we bind it
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		if err = s.Start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start runs redis-server on s.port and waits until it answers PING.
func (s *redisServer) Start() error {
	args := append(append([]string(nil), s.head...),
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir)
	args = append(args, s.extra...)
	cmd := exec.Command(s.bin, args...)
	logs := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = &syncWriter{w: logs}, &syncWriter{w: logs}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.logs = cmd, done, logs
	s.mu.Unlock()

	c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1, MaintNotificationsConfig: disabledMaint()})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited on port %d: %s", s.port, s.Logs())
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on port %d did not answer: %v\n%s", s.port, err, s.Logs())
		}
		time.Sleep(5 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// Kill stops the server abruptly (SIGKILL), as a crash would, and waits for
// it to exit.
func (s *redisServer) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Logs returns what the server printed.
func (s *redisServer) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs == nil {
		return ""
	}
	return s.logs.String()
}

// Addr is host:port.
func (s *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the redis:// URL of database db.
func (s *redisServer) URL(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr(), db) }

// Client returns a client closed at the end of tb.
func (s *redisServer) Client(tb testing.TB) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), MaintNotificationsConfig: disabledMaint()})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// The shared server serves the tests that only need a distinct prefix.
var (
	sharedOnce sync.Once
	shared     *redisServer
	sharedErr  error
	sharedDir  string
)

func sharedRedis(tb testing.TB) *redisServer {
	tb.Helper()
	bin := redisBinary(tb)
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "runbookbot-redis-")
		if sharedErr == nil {
			shared, sharedErr = newRedisServer(bin, sharedDir)
		}
	})
	if sharedErr != nil {
		tb.Fatalf("shared redis-server: %v", sharedErr)
	}
	return shared
}

// quietLogger drops go-redis' own log lines (Sentinel discovery, dial
// retries while a test has Redis down), which would bury test output.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	goredis.SetLogger(quietLogger{})
	code := m.Run()
	if shared != nil {
		shared.Kill()
	}
	if sharedDir != "" {
		_ = os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

var prefixSeq atomic.Int64

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// testPrefix returns a key prefix no other test uses.
func testPrefix(tb testing.TB) string {
	name := unsafeChars.ReplaceAllString(filepath.Base(tb.Name()), "_")
	return fmt.Sprintf("t%d-%s:", prefixSeq.Add(1), name)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond) // poll interval, bounded by the deadline
	}
}
