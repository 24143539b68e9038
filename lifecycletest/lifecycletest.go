// Package lifecycletest helps test a service built on a [lifecycle.Group]:
// a Group preset for tests, a helper that runs it and makes sure it stops,
// fault-injection components, and a recorder of the Group's events with the
// assertions a test of a shutdown needs.
//
//	func TestShutdownOrder(t *testing.T) {
//		g, rec := lifecycletest.New(t)
//		g.Add("db", lifecycletest.NewFake())
//		g.Add("api", lifecycletest.NewFake())
//		run := lifecycletest.Run(t, g)
//		run.WaitReady()
//		if err := run.Stop(); err != nil {
//			t.Fatal(err)
//		}
//		rec.StartedAfterReady(t, "api", "db")
//		rec.ReadinessOffBeforeStop(t)
//		rec.StoppedBefore(t, "api", "db")
//		rec.EveryStartedStoppedOnce(t)
//	}
//
// Everything in the package works inside a [testing/synctest] bubble, where a
// Group's timers (drain delay, shutdown and start timeouts) run on the
// bubble's fake clock: a test of a 25 s budget takes microseconds. The
// package's own waits are bounded by timers, which follow the bubble's clock
// too, and it starts no goroutine but the one that Run starts, which ends when
// the Group's Run returns.
package lifecycletest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

// New returns a Group for a test and the Recorder of its events. The Group
// handles no signals (WithSignals()), has no drain delay (WithDrainDelay(0)),
// logs to the test's output ([Logger]) and reports its events to the Recorder.
// opts come after these and override them; the other options keep the
// library's defaults.
//
// At the end of the test, New's cleanup fails the test if the Group was
// started and has not stopped within a bound ([DefaultBound]); use [Run],
// which stops it, to run it.
func New(tb testing.TB, opts ...lifecycle.Option) (*lifecycle.Group, *Recorder) {
	tb.Helper()
	rec := NewRecorder()
	all := append(Options(rec), lifecycle.WithLogger(Logger(tb)))
	g := lifecycle.New(append(all, opts...)...)
	tb.Cleanup(func() {
		tb.Helper()
		if p := g.Phase(); p == lifecycle.PhaseIdle || p == lifecycle.PhaseStopped {
			return
		}
		t := time.NewTimer(DefaultBound)
		defer t.Stop()
		select {
		case <-rec.PhaseSeen(lifecycle.PhaseStopped):
		case <-t.C:
			if p := g.Phase(); p != lifecycle.PhaseStopped {
				tb.Errorf("lifecycletest: the Group did not stop by the end of the test\nwant: phase stopped\nhave: phase %v %v after the test ended", p, DefaultBound)
			}
		}
	})
	return g, rec
}

// Options returns the options of a Group under test, as New sets them but
// without a test to log to: no signals, no drain delay, logs discarded, and
// the events reported to rec. It is for code that builds its own Group, such
// as a service's constructor that takes options (and for examples, which have
// no testing.TB). Options given after these override them.
//
// Inside a testing/synctest bubble, a Group must not handle signals: the
// first signal.Notify of a process, made in a bubble, is a fatal error of the
// runtime.
func Options(rec *Recorder) []lifecycle.Option {
	return []lifecycle.Option{
		lifecycle.WithSignals(),
		lifecycle.WithDrainDelay(0),
		lifecycle.WithLogger(nil),
		lifecycle.WithObserver(rec.Observe),
	}
}

// Logger returns a logger that writes to the test's output (tb.Output: shown
// with -v or when the test fails), in slog's text format without the time.
// Logs after the test has ended are dropped rather than panicking.
func Logger(tb testing.TB) *slog.Logger {
	w := &testWriter{w: tb.Output()}
	tb.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// testWriter writes to a test's output until the test ends.
type testWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	return w.w.Write(p)
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// DefaultBound is how long the helpers wait for a Group before they fail the
// test: longer than the library's default start timeout (1 min) and shutdown
// budget (25 s), so that it only catches a Group that does not keep to them.
// Inside a synctest bubble it costs no real time.
const DefaultBound = 90 * time.Second

// ErrStopped is the cause of the shutdown that [Running.Stop] begins.
var ErrStopped = errors.New("lifecycletest: stopped by the test")

// A RunOption configures [Run].
type RunOption func(*Running)

// Within sets how long Run's helpers wait for the Group (to be ready, to
// return) before they fail the test. The default is [DefaultBound]; set more
// for a Group whose start timeout or shutdown budget is longer.
func Within(d time.Duration) RunOption {
	return func(r *Running) { r.bound = d }
}

// Running is a Group's Run in progress, started by [Run].
type Running struct {
	tb     testing.TB
	g      *lifecycle.Group
	cancel context.CancelCauseFunc
	bound  time.Duration
	done   chan struct{}
	err    error // set before done is closed

	mu      sync.Mutex
	checked bool // the test has seen err
}

// Run calls g.Run in a goroutine, with a context that is cancelled when the
// test ends, and returns at once. Its cleanup cancels that context, waits for
// Run to return, and fails the test if Run did not return within the bound,
// or returned an error that the test did not look at (with Wait, Stop or
// Err).
func Run(tb testing.TB, g *lifecycle.Group, opts ...RunOption) *Running {
	tb.Helper()
	ctx, cancel := context.WithCancelCause(tb.Context())
	r := &Running{tb: tb, g: g, cancel: cancel, bound: DefaultBound, done: make(chan struct{})}
	for _, opt := range opts {
		opt(r)
	}
	go func() {
		defer close(r.done)
		r.err = g.Run(ctx)
	}()
	tb.Cleanup(func() {
		tb.Helper()
		r.cancel(ErrStopped)
		if !r.await(r.done) {
			tb.Errorf("lifecycletest: Run did not return by the end of the test\nwant: Run returned within %v\nhave: phase %v", r.bound, g.Phase())
			return
		}
		r.mu.Lock()
		checked := r.checked
		r.mu.Unlock()
		if !checked && r.err != nil {
			tb.Errorf("lifecycletest: Run returned an error that the test did not check\nwant: nil, or check it with Wait or Stop\nhave: %v", r.err)
		}
	})
	return r
}

// await waits for ch to be closed, up to the bound; it reports whether it was.
func (r *Running) await(ch <-chan struct{}) bool {
	t := time.NewTimer(r.bound)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// WaitReady blocks until the Group is ready (every component started and
// ready). If Run returns first, or the bound passes, it fails the test at once
// (FailNow): call it from the test's goroutine.
func (r *Running) WaitReady() {
	r.tb.Helper()
	t := time.NewTimer(r.bound)
	defer t.Stop()
	select {
	case <-r.g.Ready():
	case <-r.done:
		r.mu.Lock()
		r.checked = true
		r.mu.Unlock()
		r.tb.Fatalf("lifecycletest: Run returned before the Group was ready\nwant: the Group ready\nhave: Run returned %v", r.err)
	case <-t.C:
		r.tb.Fatalf("lifecycletest: the Group was not ready in time\nwant: ready within %v\nhave: phase %v", r.bound, r.g.Phase())
	}
}

// Wait blocks until Run has returned, and returns its error. If Run does not
// return within the bound, it fails the test at once (FailNow): call it from
// the test's goroutine.
func (r *Running) Wait() error {
	r.tb.Helper()
	if !r.await(r.done) {
		r.tb.Fatalf("lifecycletest: Run did not return in time\nwant: Run returned within %v\nhave: phase %v", r.bound, r.g.Phase())
	}
	return r.Err()
}

// Stop begins the shutdown, by cancelling Run's context with [ErrStopped],
// and then waits as Wait does and returns Run's error.
func (r *Running) Stop() error {
	r.tb.Helper()
	r.cancel(ErrStopped)
	return r.Wait()
}

// Done returns a channel that is closed when Run has returned.
func (r *Running) Done() <-chan struct{} { return r.done }

// Err returns Run's error once Run has returned (see Done), and nil before.
func (r *Running) Err() error {
	select {
	case <-r.done:
	default:
		return nil
	}
	r.mu.Lock()
	r.checked = true
	r.mu.Unlock()
	return r.err
}
