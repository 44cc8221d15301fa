// Package promtest starts a real Prometheus (the Debian package) for tests,
// scraping targets the test provides.
package promtest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RequireEnv makes a missing prometheus binary a failure instead of a skip.
const RequireEnv = "RUNBOOKBOT_REQUIRE_PROMETHEUS"

// Server is a running Prometheus.
type Server struct {
	URL string
}

func freeAddr(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start runs Prometheus scraping targets (host:port) every 500ms and stops
// it when the test ends.
func Start(tb testing.TB, targets ...string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			tb.Fatalf("prometheus not found and %s is set (apt-get install prometheus)", RequireEnv)
		}
		tb.Skip("prometheus not found: skipping (apt-get install prometheus)")
	}
	dir := tb.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\nscrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [%s]\n", strings.Join(quote(targets), ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	addr := freeAddr(tb)
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logf, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	s := &Server{URL: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			tb.Fatalf("prometheus not ready: %s", b)
		}
		time.Sleep(50 * time.Millisecond) // polling readiness of another process
	}
}

func quote(ts []string) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = `"` + t + `"`
	}
	return out
}
