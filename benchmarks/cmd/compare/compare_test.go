package main

import (
	"bufio"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	appsOnce sync.Once
	appsDir  string
	appsBins map[string]string
	appsErr  error
)

// buildApps builds the applications once for all tests, from the module's
// root (two levels up from this package).
func buildApps(t *testing.T) map[string]string {
	t.Helper()
	appsOnce.Do(func() {
		if appsDir, appsErr = os.MkdirTemp("", "compare-test-"); appsErr == nil {
			appsBins, appsErr = build("../..", appsDir)
		}
	})
	if appsErr != nil {
		t.Fatal(appsErr)
	}
	return appsBins
}

func TestMain(m *testing.M) {
	code := m.Run()
	if appsDir != "" {
		os.RemoveAll(appsDir)
	}
	os.Exit(code)
}

// TestApps builds each peer's application and checks that it starts, serves
// /work, and exits 0 on SIGTERM.
func TestApps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the applications")
	}
	bins := buildApps(t)
	for _, p := range peerNames {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			c, err := startChild(bins[p], "-delay=1ms", "-drain=50ms")
			if err != nil {
				t.Fatal(err)
			}
			defer c.kill()
			resp, err := http.Post("http://"+c.addr+"/work", "text/plain", nil)
			if err != nil {
				t.Fatalf("POST /work: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("POST /work: have status %d, want 200", resp.StatusCode)
			}
			if _, err := c.term(); err != nil {
				t.Fatal(err)
			}
			if !c.waitExit(10 * time.Second) {
				t.Fatalf("not exited 10 s after SIGTERM; stderr: %s", c.stderr.String())
			}
			if have, want := c.exitCode(), "exit 0"; have != want {
				t.Errorf("after SIGTERM: have %s, want %s; stderr: %s", have, want, c.stderr.String())
			}
		})
	}
}

// TestLoadCountsLoss runs a short load against the oklog/run application,
// whose shutdown drops the requests in flight, and checks that the load
// counts them and reaps the process.
func TestLoadCountsLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs an application")
	}
	bins := buildApps(t)
	plan := loadPlan{clients: 2, termAfter: 200 * time.Millisecond, maxRequests: 2000, maxTime: 5 * time.Second}
	r, err := runLoad(bins["oklog"], plan, "-delay=50ms")
	if err != nil {
		t.Fatal(err)
	}
	if r.OK == 0 || !r.Exited {
		t.Errorf("have %+v, want some OK and the process exited", r)
	}
	if r.Lost == 0 {
		t.Logf("no request lost this time (%+v); the in-flight ones usually are", r)
	}
}

func TestParseBench(t *testing.T) {
	const out = `goos: linux
BenchmarkStartStop/n=10/peer=graceful-2   10268   34308 ns/op   1637 B/component   20.60 allocs/component   3431 ns/component
BenchmarkStartStop/n=10/peer=graceful-2   10268   34308 ns/op   1637 B/component   20.80 allocs/component   3000 ns/component
BenchmarkStartStop/n=10/peer=graceful-2   10268   34308 ns/op   1637 B/component   20.70 allocs/component   3500 ns/component
BenchmarkSlowStart/peer=oklog-2   67   5245212 ns/op   5.232 ms-to-ready
PASS
`
	b, err := parseBench(bufio.NewScanner(strings.NewReader(out)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		bench, peer, unit string
		want              float64
	}{
		{"StartStop/n=10", "graceful", "ns/component", 3431},
		{"StartStop/n=10", "graceful", "allocs/component", 20.7},
		{"SlowStart", "oklog", "ms-to-ready", 5.232},
	}
	for _, tt := range tests {
		have, ok := b.get(tt.bench, tt.peer, tt.unit)
		if !ok || have != tt.want {
			t.Errorf("get(%q, %q, %q): have %v (%v), want %v", tt.bench, tt.peer, tt.unit, have, ok, tt.want)
		}
	}
}

// TestStartStopTable checks the ratio to oklog/run and the verdict on the
// target in the start+stop table.
func TestStartStopTable(t *testing.T) {
	const out = `BenchmarkStartStop/n=100/kind=plain/peer=graceful-2   1  1 ns/op  3000 ns/component  10.00 allocs/component  400 B/component
BenchmarkStartStop/n=100/kind=func/peer=graceful-2    1  1 ns/op  5000 ns/component  10.00 allocs/component  400 B/component
BenchmarkStartStop/n=100/peer=oklog-2                 1  1 ns/op  2000 ns/component   5.00 allocs/component  200 B/component
BenchmarkSlowStart/graph=independent/peer=graceful-2  1  1 ns/op  5.5 ms-to-ready
BenchmarkSlowStart/peer=fx-2                          1  1 ns/op  104.0 ms-to-ready
`
	b, err := parseBench(bufio.NewScanner(strings.NewReader(out)))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	printStartStop(&sb, b)
	table := sb.String()
	for _, want := range []string{
		"| 100 | a trivial Component | 3000 / 400 / 10.0 | 2000 / 200 / 5.0 | ×1.50, ×2.00 | yes |",
		"| 100 | lifecycle.Func | 5000 / 400 / 10.0 | 2000 / 200 / 5.0 | ×2.50, ×2.00 | allocs only |",
		"| 100 | lifecycle.Worker | — | 2000 / 200 / 5.0 | — | — |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q; have:\n%s", want, table)
		}
	}
	sb.Reset()
	benchRow2(&sb, b, "SlowStart/graph=independent", "SlowStart", "ms-to-ready", "slow", "%.1f")
	if have, want := sb.String(), "| slow | 5.5 | — | 104.0 (×18.91) | — |\n"; have != want {
		t.Errorf("benchRow2: have %q, want %q", have, want)
	}
}

// TestHangGraceful runs the graceful application whose worker's stop hangs,
// with the hang scenario's arguments, and checks that it starts (its
// configuration is valid) and exits with ExitTimeout.
func TestHangGraceful(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs an application")
	}
	bins := buildApps(t)
	r, err := runHang(bins["graceful"], hung.args...)
	if err != nil {
		t.Fatal(err)
	}
	if !r.exited || r.code != "exit 3" {
		t.Errorf("have %+v, want exited with exit 3", r)
	}
}
