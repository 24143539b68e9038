package lifecycletest

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

var errBoom = errors.New("boom")

// closed reports whether ch is closed (without waiting).
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// wantComponentErr checks that err holds a *lifecycle.ComponentError for
// name in phase, wrapping target.
func wantComponentErr(t *testing.T, err error, name string, p lifecycle.Phase, target error) {
	t.Helper()
	var ce *lifecycle.ComponentError
	if !errors.As(err, &ce) || ce.Component != name || ce.Phase != p || !errors.Is(err, target) {
		t.Errorf("Run: want a ComponentError of %q in phase %v matching %v, have %v", name, p, target, err)
	}
}

func TestFakeBehavesWell(t *testing.T) {
	g, rec := New(t)
	var f Fake // the zero Fake is ready to use
	g.Add("f", &f)
	run := Run(t, g)
	<-f.StartCalled()
	run.WaitReady()
	if closed(f.StopCalled()) || closed(f.Exited()) {
		t.Fatal("Stop called or Start returned while the Group runs")
	}
	if err := run.Stop(); err != nil {
		t.Fatalf("Run: want nil, have %v", err)
	}
	for _, ch := range []<-chan struct{}{f.StopCalled(), f.DrainCalled(), f.Exited()} {
		if !closed(ch) {
			t.Error("a channel of the Fake is not closed after the Group stopped")
		}
	}
	if f.Starts() != 1 || f.Stops() != 1 || f.Drains() != 1 {
		t.Errorf("calls: want 1 Start, 1 Stop, 1 Drain; have %d, %d, %d", f.Starts(), f.Stops(), f.Drains())
	}
	if _, ok := f.StopContext().Deadline(); !ok {
		t.Error("StopContext: want the shutdown deadline on Stop's context, have none")
	}
	rec.EveryStartedStoppedOnce(t)
}

// TestFakeReadyLate: a Fake blocked in Start is not ready until Release.
func TestFakeReadyLate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, rec := New(t)
		g.Add("db", NewFake())
		slow := NewFake(BlockIn(StepStart))
		g.Add("slow", slow)
		api := NewFake()
		g.Add("api", api)
		run := Run(t, g)
		<-slow.StartCalled()
		time.Sleep(30 * time.Second) // in the bubble: passes at once, once every goroutine is blocked
		if closed(g.Ready()) || api.Starts() != 0 {
			t.Fatalf("before Release: want the Group not ready and api not started; have ready %v, api starts %d",
				closed(g.Ready()), api.Starts())
		}
		slow.Release()
		run.WaitReady()
		if err := run.Stop(); err != nil {
			t.Fatalf("Run: want nil, have %v", err)
		}
		rec.StartedAfterReady(t, "api", "slow")
	})
}

// TestFakeNeverReady: the start timeout ends a start that never gets ready,
// in the bubble's time.
func TestFakeNeverReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 30 * time.Second
		g, rec := New(t, lifecycle.WithStartTimeout(timeout))
		never := NewFake(BlockIn(StepStart))
		g.Add("never", never)
		began := time.Now()
		err := Run(t, g).Wait()
		if took := time.Since(began); took != timeout {
			t.Errorf("Run: want it to return after the start timeout %v, have %v", timeout, took)
		}
		wantComponentErr(t, err, "never", lifecycle.PhaseStarting, lifecycle.ErrTimeout)
		if never.Starts() != 1 || closed(never.Ready()) {
			t.Errorf("want 1 Start and never ready; have %d Starts, ready %v", never.Starts(), closed(never.Ready()))
		}
		rec.EveryStartedStoppedOnce(t)
	})
}

func TestFakeFailAt(t *testing.T) {
	t.Run("start", func(t *testing.T) {
		g, rec := New(t)
		db := NewFake()
		g.Add("db", db)
		bad := NewFake(FailAt(StepStart, errBoom))
		g.Add("bad", bad)
		err := Run(t, g).Wait()
		wantComponentErr(t, err, "bad", lifecycle.PhaseStarting, errBoom)
		if bad.Stops() != 0 || db.Stops() != 1 {
			t.Errorf("Stops: want bad 0 (it never started) and db 1, have %d and %d", bad.Stops(), db.Stops())
		}
		rec.EveryStartedStoppedOnce(t)
	})
	t.Run("stop", func(t *testing.T) {
		g, rec := New(t)
		bad := NewFake(FailAt(StepStop, errBoom))
		g.Add("bad", bad)
		run := Run(t, g)
		run.WaitReady()
		wantComponentErr(t, run.Stop(), "bad", lifecycle.PhaseStopping, errBoom)
		rec.StoppedOnce(t, "bad")
	})
}

func TestFakePanicAt(t *testing.T) {
	for _, step := range []Step{StepStart, StepReady, StepDrain, StepStop} {
		t.Run(step.String(), func(t *testing.T) {
			g, _ := New(t)
			g.Add("p", NewFake(PanicAt(step, "at "+step.String())))
			run := Run(t, g)
			var err error
			if step == StepStart || step == StepReady {
				err = run.Wait()
			} else {
				run.WaitReady()
				err = run.Stop()
			}
			var pe *lifecycle.PanicError
			if !errors.As(err, &pe) || pe.Value != "at "+step.String() {
				t.Errorf("Run: want a PanicError with %q, have %v", "at "+step.String(), err)
			}
		})
	}
}

// TestFakeStuckStop: a Stop that ignores its context is abandoned at the
// deadline; one that watches it returns then, and is not.
func TestFakeStuckStop(t *testing.T) {
	const budget = 10 * time.Second
	for _, ignore := range []bool{false, true} {
		name := map[bool]string{false: "watches its context", true: "ignores its context"}[ignore]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g, rec := New(t, lifecycle.WithShutdownTimeout(budget))
				opts := []FakeOption{BlockIn(StepStop)}
				if ignore {
					opts = append(opts, IgnoreContext())
				}
				stuck := NewFake(opts...)
				t.Cleanup(stuck.Release)
				g.Add("stuck", stuck)
				run := Run(t, g)
				run.WaitReady()
				began := time.Now()
				err := run.Stop()
				took := time.Since(began)
				if !errors.Is(err, lifecycle.ErrTimeout) {
					t.Errorf("Run: want ErrTimeout, have %v", err)
				}
				// The stop context is done a fifth of the time (at most 200 ms)
				// before the deadline; Run returns within the budget.
				if took < budget-250*time.Millisecond || took > budget {
					t.Errorf("Run: want it to return just before the deadline %v, have %v", budget, took)
				}
				if abandoned := rec.Count(lifecycle.EventAbandoned, "stuck"); abandoned != map[bool]int{false: 0, true: 1}[ignore] {
					t.Errorf("abandoned events: have %d\n%s", abandoned, rec)
				}
			})
		})
	}
}

// TestFakeIgnoreStop: a Start that ignores Stop returns when its context is
// cancelled; one that also ignores the context is abandoned.
func TestFakeIgnoreStop(t *testing.T) {
	t.Run("context", func(t *testing.T) {
		g, rec := New(t)
		f := NewFake(IgnoreStop())
		g.Add("f", f)
		run := Run(t, g)
		run.WaitReady()
		if err := run.Stop(); err != nil {
			t.Fatalf("Run: want nil, have %v", err)
		}
		rec.NothingAbandoned(t)
	})
	t.Run("both", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g, rec := New(t, lifecycle.WithShutdownTimeout(5*time.Second))
			f := NewFake(IgnoreStop(), IgnoreContext())
			t.Cleanup(f.Release)
			g.Add("f", f)
			run := Run(t, g)
			run.WaitReady()
			err := run.Stop()
			if !errors.Is(err, lifecycle.ErrTimeout) || !strings.Contains(err.Error(), "Start did not return after Stop") {
				t.Errorf("Run: want ErrTimeout for a Start that did not return, have %v", err)
			}
			if rec.Count(lifecycle.EventAbandoned, "f") != 1 {
				t.Errorf("want f abandoned once, have:\n%s", rec)
			}
			if closed(f.Exited()) {
				t.Error("Start returned before Release")
			}
			f.Release()
			<-f.Exited()
		})
	})
}

func TestFakeExit(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{{"early", nil, lifecycle.ErrExited}, {"failure", errBoom, errBoom}} {
		t.Run(tt.name, func(t *testing.T) {
			g, rec := New(t)
			f := NewFake()
			g.Add("f", f)
			run := Run(t, g)
			run.WaitReady()
			f.Exit(tt.err)
			wantComponentErr(t, run.Wait(), "f", lifecycle.PhaseRunning, tt.want)
			rec.EveryStartedStoppedOnce(t)
		})
	}
}

// TestFakeStuckDrain: a Drain that blocks is abandoned at the deadline.
func TestFakeStuckDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const budget = 10 * time.Second
		g, rec := New(t, lifecycle.WithShutdownTimeout(budget), lifecycle.WithDrainDelay(time.Second))
		f := NewFake(BlockIn(StepDrain))
		t.Cleanup(f.Release)
		g.Add("f", f)
		run := Run(t, g)
		run.WaitReady()
		err := run.Stop()
		if !errors.Is(err, lifecycle.ErrTimeout) {
			t.Errorf("Run: want ErrTimeout, have %v", err)
		}
		if rec.Count(lifecycle.EventAbandoned, "f") != 1 {
			t.Errorf("want f abandoned once, have:\n%s", rec)
		}
	})
}

// TestFakeBlockReady: a Ready method that blocks until Release.
func TestFakeBlockReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := NewFake(BlockIn(StepReady))
		got := make(chan (<-chan struct{}))
		go func() { got <- f.Ready() }()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("Ready returned before Release")
		default:
		}
		f.Release()
		if ch := <-got; closed(ch) {
			t.Error("Ready's channel closed before Start")
		}
	})
}

// TestFakeRestart: a Fake can be started again after its Start returned, and
// counts both.
func TestFakeRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := NewFake()
		ctx := t.Context()
		first := make(chan error)
		go func() { first <- f.Start(ctx) }()
		<-f.Ready()
		f.Exit(errBoom)
		if err := <-first; !errors.Is(err, errBoom) {
			t.Fatalf("first Start: want %v, have %v", errBoom, err)
		}
		second := make(chan error)
		go func() { second <- f.Start(ctx) }()
		synctest.Wait()
		if err := f.Stop(ctx); err != nil {
			t.Fatalf("Stop: want nil, have %v", err)
		}
		if err := <-second; err != nil {
			t.Fatalf("second Start: want nil, have %v", err)
		}
		if f.Starts() != 2 || f.Stops() != 1 {
			t.Errorf("want 2 Starts and 1 Stop, have %d and %d", f.Starts(), f.Stops())
		}
	})
}

func TestNewFakeInvalid(t *testing.T) {
	for _, tt := range []struct {
		opt  FakeOption
		want string
	}{
		{FailAt(StepReady, errBoom), "FailAt(ready): ready has no error to return; use PanicAt"},
		{FailAt(StepDrain, errBoom), "FailAt(drain): drain has no error to return"},
		{FailAt(StepStop, nil), "FailAt(stop, nil): no error to fail with"},
		{PanicAt(StepStart, nil), "PanicAt(start, nil): no value to panic with"},
		{BlockIn(Step(9)), "BlockIn: unknown step step(9)"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			defer func() {
				v := recover()
				if s, _ := v.(string); !strings.Contains(s, tt.want) {
					t.Errorf("NewFake: want a panic containing %q, have %v", tt.want, v)
				}
			}()
			NewFake(tt.opt)
		})
	}
	t.Run("fail and panic", func(t *testing.T) {
		defer func() {
			if s, _ := recover().(string); !strings.Contains(s, "both FailAt and PanicAt at stop") {
				t.Errorf("NewFake: want a panic naming both, have %q", s)
			}
		}()
		NewFake(FailAt(StepStop, errBoom), PanicAt(StepStop, "x"))
	})
}
