// Package redistest starts a real redis-server for tests on a free
// loopback port with its own data directory.
package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// RequireEnv makes a missing redis-server a failure instead of a skip.
const RequireEnv = "RUNBOOKBOT_REQUIRE_REDIS"

// Server is one redis-server process.
type Server struct {
	Addr string
	dir  string
	cmd  *exec.Cmd
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Start runs redis-server and stops it when the test ends. Without the
// binary the test is skipped (or fails when RequireEnv is set).
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			tb.Fatalf("redis-server not found and %s is set; install it with test/redis.sh", RequireEnv)
		}
		tb.Skip("redis-server not found: skipping (install it with test/redis.sh)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	s := &Server{Addr: addr, dir: tb.TempDir()}
	s.cmd = exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir)
	if err := s.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.cmd.Process.Kill(); _ = s.cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			fmt.Fprint(c, "PING\r\n")
			buf := make([]byte, 7)
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return s
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redis-server on %s did not answer", addr)
		}
		time.Sleep(20 * time.Millisecond) // polling a port that has no event to wait on
	}
}
