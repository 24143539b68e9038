// Package app is the part of the benchmark application that does not depend
// on the supervisor: its flags, its HTTP handler and its background worker.
// Each program under cmd/apps wires these same parts with one peer (graceful,
// oklog/run, fx, or a hand-written errgroup), so that the driver in
// cmd/compare measures the supervisors and nothing else.
//
// Every program prints the line "ready" on standard output once its listener
// is bound and its components are started, and exits 0 after a clean
// shutdown on SIGTERM.
package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// Config is what the command line of every benchmark application sets.
type Config struct {
	// Addr is the address to listen on, such as 127.0.0.1:8080.
	Addr string
	// Delay is how long the /work handler takes to answer.
	Delay time.Duration
	// Budget is the shutdown budget; zero means the peer's default (graceful
	// 25 s, fx 15 s, errgroup 25 s as written here; oklog/run has none).
	Budget time.Duration
	// Drain is graceful's drain delay; negative means its default (5 s, or a
	// fifth of the budget when the budget is 5 s or less). The other peers have no drain delay and ignore it.
	Drain time.Duration
	// Hang makes the worker ignore the request to stop: its stop never
	// returns.
	Hang bool
	// Quiet turns the peer's default logging off: graceful logs every phase
	// and component step to slog.Default(), fx every hook to stderr. The
	// oklog/run and errgroup applications log nothing anyway.
	Quiet bool
}

// ParseFlags parses the command line into a Config.
func ParseFlags() Config {
	var c Config
	flag.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address")
	flag.DurationVar(&c.Delay, "delay", 20*time.Millisecond, "time the /work handler takes")
	flag.DurationVar(&c.Budget, "budget", 0, "shutdown budget; 0 for the peer's default")
	flag.DurationVar(&c.Drain, "drain", -1, "drain delay (graceful only); negative for the default")
	flag.BoolVar(&c.Hang, "hang", false, "make the worker's stop hang")
	flag.BoolVar(&c.Quiet, "quiet", false, "turn the peer's default logging off")
	flag.Parse()
	return c
}

// BudgetOr returns c.Budget, or def when it is zero.
func (c Config) BudgetOr(def time.Duration) time.Duration {
	if c.Budget > 0 {
		return c.Budget
	}
	return def
}

// Handler returns the application's routes: POST or GET /work waits delay
// (or until the request's context is done) and answers "ok".
func Handler(delay time.Duration) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

// Listen binds a TCP listener on addr, so that a port in use is an error at
// start and not a log line later.
func Listen(addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}

// Worker is the background component: it does a little work every 10 ms
// until ctx is done, then returns nil. With hang set it never returns, as a
// worker stuck in a call without a deadline would.
func Worker(ctx context.Context, hang bool) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-t.C:
			n++
		case <-ctx.Done():
			for hang {
				time.Sleep(time.Hour)
			}
			return nil
		}
	}
}

// Ready tells the driver that the application serves.
func Ready() {
	fmt.Fprintln(os.Stdout, "ready")
}

// Fatal prints err and exits with status 1. It is for errors before the
// supervisor runs (flags, listen).
func Fatal(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
