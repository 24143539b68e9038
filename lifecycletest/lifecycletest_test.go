package lifecycletest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

// drainTook returns how long the drain phase lasted: the Duration of the
// event of the phase after it.
func drainTook(t *testing.T, rec *Recorder) time.Duration {
	t.Helper()
	for _, ev := range rec.Events() {
		if ev.Kind == lifecycle.EventPhase && ev.Phase == lifecycle.PhaseStopping {
			return ev.Duration
		}
	}
	t.Fatalf("no phase stopping event:\n%s", rec)
	return 0
}

// TestNewPreset checks what New sets: no drain delay, logs to the test's
// output, the Recorder attached; and that the caller's options win. It runs
// in a synctest bubble, where a Group that registered for signals would crash
// the test binary (see TestSynctestBudget).
func TestNewPreset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSpy(t)
		g, rec := New(s)
		g.Add("f", NewFake())
		run := Run(s, g)
		run.WaitReady()
		if err := run.Stop(); err != nil {
			t.Fatalf("Run: want nil, have %v", err)
		}
		s.end()
		wantNoFailure(t, s)
		if d := drainTook(t, rec); d != 0 {
			t.Errorf("drain: want none, have %v", d)
		}
		out := s.output()
		for _, want := range []string{`msg="lifecycle: running: every component is ready"`, `msg="lifecycle: component stopped" component=f`} {
			if !strings.Contains(out, want) {
				t.Errorf("log: want a line with %s, have:\n%s", want, out)
			}
		}
		if strings.Contains(out, "time=") {
			t.Errorf("log: want no time, have:\n%s", out)
		}
	})
	t.Run("options override", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const drain = 2 * time.Second
			g, rec := New(t, lifecycle.WithDrainDelay(drain))
			g.Add("f", NewFake())
			run := Run(t, g)
			run.WaitReady()
			if err := run.Stop(); err != nil {
				t.Fatalf("Run: want nil, have %v", err)
			}
			if d := drainTook(t, rec); d != drain {
				t.Errorf("drain: want %v, have %v", drain, d)
			}
		})
	})
}

// TestLoggerAfterEnd: what is logged after the test has ended is dropped
// (t.Output would panic).
func TestLoggerAfterEnd(t *testing.T) {
	s := newSpy(t)
	l := Logger(s)
	l.Info("during")
	s.end()
	l.Info("after")
	if out := s.output(); !strings.Contains(out, "msg=during") || strings.Contains(out, "after") {
		t.Errorf("want the log during the test and not after, have:\n%s", out)
	}
}

// TestRunStopsAtTheEnd: a Group left running by a test is stopped by Run's
// cleanup.
func TestRunStopsAtTheEnd(t *testing.T) {
	f := NewFake()
	var g *lifecycle.Group
	var run *Running
	t.Run("leaves it running", func(t *testing.T) {
		g, _ = New(t)
		g.Add("f", f)
		run = Run(t, g)
		run.WaitReady()
	})
	if !closed(run.Done()) || f.Stops() != 1 || g.Phase() != lifecycle.PhaseStopped {
		t.Errorf("after the test: want Run returned, f stopped once, phase stopped; have %v, %d, %v",
			closed(run.Done()), f.Stops(), g.Phase())
	}
}

// TestRunUncheckedError: Run's cleanup reports an error that the test did
// not look at, and only then.
func TestRunUncheckedError(t *testing.T) {
	for _, check := range []bool{false, true} {
		name := map[bool]string{false: "unchecked", true: "checked"}[check]
		t.Run(name, func(t *testing.T) {
			s := newSpy(t)
			g, _ := New(s)
			g.Add("bad", NewFake(FailAt(StepStart, errBoom)))
			run := Run(s, g)
			<-run.Done()
			if check {
				if err := run.Err(); !errors.Is(err, errBoom) {
					t.Errorf("Err: want %v, have %v", errBoom, err)
				}
			}
			s.end()
			if check {
				wantNoFailure(t, s)
				return
			}
			wantFailure(t, s, "Run returned an error that the test did not check", "have: start bad: boom")
		})
	}
}

// TestRunDoesNotReturn: Run's cleanup fails the test when Run does not return
// within the bound.
func TestRunDoesNotReturn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSpy(t)
		g, _ := New(s, lifecycle.WithShutdownTimeout(25*time.Second))
		stuck := NewFake(BlockIn(StepStop), IgnoreContext())
		g.Add("stuck", stuck)
		run := Run(s, g, Within(time.Second))
		run.WaitReady()
		s.end() // Run returns at the deadline, 25 s after its context was cancelled
		wantFailure(t, s, "Run did not return by the end of the test", "want: Run returned within 1s", "have: phase stopping")
		stuck.Release()
		<-run.Done()
	})
}

func TestWaitReadyFails(t *testing.T) {
	t.Run("Run returned", func(t *testing.T) {
		s := newSpy(t)
		g, _ := New(s)
		g.Add("bad", NewFake(FailAt(StepStart, errBoom)))
		run := Run(s, g)
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			run.WaitReady()
		}()
		<-ended
		s.end()
		wantFailure(t, s, "Run returned before the Group was ready", "have: Run returned start bad: boom")
	})
	t.Run("bound", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newSpy(t)
			g, _ := New(s)
			slow := NewFake(BlockIn(StepStart))
			g.Add("slow", slow)
			run := Run(s, g, Within(time.Second))
			ended := make(chan struct{})
			go func() {
				defer close(ended)
				run.WaitReady()
			}()
			<-ended
			slow.Release()
			run.WaitReady()
			if err := run.Stop(); err != nil {
				t.Errorf("Run: want nil, have %v", err)
			}
			s.end()
			wantFailure(t, s, "the Group was not ready in time", "want: ready within 1s", "have: phase starting")
		})
	})
}

// TestNewNotStopped: New's cleanup fails the test when the Group, run by the
// test itself, has not stopped by the end.
func TestNewNotStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSpy(t)
		g, _ := New(s)
		g.Add("f", NewFake())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- g.Run(ctx) }()
		<-g.Ready()
		s.end()
		wantFailure(t, s, "the Group did not stop by the end of the test", "have: phase running 1m30s after the test ended")
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: want nil, have %v", err)
		}
	})
}
