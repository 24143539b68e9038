package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStartOrder: components start in the order they were added, each only
// when the previous one is ready, and stop in the reverse order.
func TestStartOrder(t *testing.T) {
	r := &rec{}
	a, b, c := newComp(r, "a"), newComp(r, "b"), newComp(r, "c")
	a.gate = make(chan struct{})
	g, ev := testGroup()
	g.Add("a", readyComp{a})
	g.Add("b", b) // not a Readier: ready once Start runs
	g.Add("c", readyComp{c})
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)

	// a's Start runs but a is not ready: b must not start.
	wait(t, waitFor(r, "start:a"), generous, "a started")
	select {
	case <-g.Ready():
		t.Fatal("group ready while a is not")
	default:
	}
	assert.Equal(t, []string{"a"}, r.only("start:"), "b started before a was ready")
	close(a.gate)

	closed(t, g.Ready(), generous, "group ready")
	assert.Equal(t, PhaseRunning, g.Phase())
	var starting []string
	for _, e := range ev.all() {
		if e.Kind == EventStarting {
			starting = append(starting, e.Component)
		}
	}
	assert.Equal(t, []string{"a", "b", "c"}, starting, "order of the Start calls")
	cancel()
	require.NoError(t, wait(t, done, generous, "Run"))
	assert.ElementsMatch(t, []string{"a", "b", "c"}, r.only("start:"))
	assert.Equal(t, []string{"c", "b", "a"}, r.only("stop:"))
	assert.Equal(t, PhaseStopped, g.Phase())
}

// waitFor returns a channel closed when r has the record s.
func waitFor(r *rec, s string) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for {
			for _, have := range r.all() {
				if have == s {
					return
				}
			}
			time.Sleep(time.Millisecond) // polling a record, not a guess: bounded by the caller's limit
		}
	}()
	return ch
}

// TestStartFailure: a start that fails stops what started in reverse order;
// the component that failed is not stopped, and those after it never start.
func TestStartFailure(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		setup   func(c *comp) Component
		wantErr func(t *testing.T, err error)
		stopped []string // stop order
	}{
		{
			name:  "error before ready",
			setup: func(c *comp) Component { c.startErr = boom; return readyComp{c} },
			wantErr: func(t *testing.T, err error) {
				assert.ErrorIs(t, err, boom)
			},
			stopped: []string{"b", "a"},
		},
		{
			name:  "panic before ready",
			setup: func(c *comp) Component { c.startPanic = "kaboom"; return readyComp{c} },
			wantErr: func(t *testing.T, err error) {
				var pe *PanicError
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, "kaboom", pe.Value)
				assert.Contains(t, string(pe.Stack), "(*comp).Start", "stack of the panic")
			},
			stopped: []string{"b", "a"},
		},
		{
			name:  "nil before ready",
			setup: func(c *comp) Component { c.startNil = true; return readyComp{c} },
			wantErr: func(t *testing.T, err error) {
				assert.ErrorIs(t, err, ErrExited)
			},
			stopped: []string{"b", "a"},
		},
		{
			name: "start timeout",
			setup: func(c *comp) Component {
				c.gate = make(chan struct{}) // never ready
				return readyComp{c}
			},
			wantErr: func(t *testing.T, err error) {
				assert.ErrorIs(t, err, ErrTimeout)
				assert.Equal(t, ExitTimeout, ExitCode(err))
			},
			stopped: []string{"x", "b", "a"}, // x started, so it is stopped
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &rec{}
			x := newComp(r, "x")
			g, ev := testGroup(WithStartTimeout(500 * time.Millisecond))
			g.Add("a", newComp(r, "a"))
			g.Add("b", readyComp{newComp(r, "b")})
			g.Add("x", tt.setup(x))
			g.Add("z", newComp(r, "z"))
			err := wait(t, runAsync(t, g, context.Background()), generous, "Run")
			require.Error(t, err)
			tt.wantErr(t, err)
			var ce *ComponentError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "x", ce.Component)
			assert.Equal(t, PhaseStarting, ce.Phase)
			assert.Equal(t, tt.stopped, r.only("stop:"), "stop order")
			assert.NotContains(t, r.only("start:"), "z", "a component after the failure started")
			_, drained := ev.phase(PhaseDraining)
			assert.False(t, drained, "drained though never running")
			assert.Empty(t, r.only("drain:"), "drained though never running")
			assert.Equal(t, PhaseStopped, g.Phase())
			assert.True(t, strings.HasPrefix(ce.Error(), "start x: "), "message %q", ce.Error())
		})
	}
}

// TestShutdownTriggers: each cause begins the shutdown, Cause tells which,
// and Run's error and exit code say what went wrong.
func TestShutdownTriggers(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name     string
		trigger  func(cancel context.CancelCauseFunc, c *comp, g *Group)
		wantCode int
		check    func(t *testing.T, err, cause error)
	}{
		{
			name:     "context cancelled",
			trigger:  func(cancel context.CancelCauseFunc, _ *comp, _ *Group) { cancel(boom) },
			wantCode: ExitOK,
			check: func(t *testing.T, err, cause error) {
				assert.NoError(t, err)
				assert.ErrorIs(t, cause, boom)
			},
		},
		{
			name:     "Stop called",
			trigger:  func(_ context.CancelCauseFunc, _ *comp, g *Group) { go func() { _ = g.Stop(context.Background()) }() },
			wantCode: ExitOK,
			check: func(t *testing.T, err, cause error) {
				assert.NoError(t, err)
				assert.ErrorIs(t, cause, errStopRequested)
			},
		},
		{
			name:     "component error",
			trigger:  func(_ context.CancelCauseFunc, c *comp, _ *Group) { c.runErr <- boom },
			wantCode: ExitFailure,
			check: func(t *testing.T, err, cause error) {
				assert.ErrorIs(t, err, boom)
				assert.ErrorIs(t, cause, boom)
				var ce *ComponentError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, "w", ce.Component)
				assert.Equal(t, PhaseRunning, ce.Phase)
				assert.Equal(t, "run w: boom", ce.Error())
			},
		},
		{
			name:     "component returns nil",
			trigger:  func(_ context.CancelCauseFunc, c *comp, _ *Group) { c.runErr <- nil },
			wantCode: ExitFailure,
			check: func(t *testing.T, err, cause error) {
				assert.ErrorIs(t, err, ErrExited)
				assert.ErrorIs(t, cause, ErrExited)
			},
		},
		{
			name:     "component panics",
			trigger:  func(_ context.CancelCauseFunc, c *comp, _ *Group) { c.runPanic <- boom },
			wantCode: ExitFailure,
			check: func(t *testing.T, err, cause error) {
				var pe *PanicError
				require.ErrorAs(t, err, &pe)
				assert.ErrorIs(t, err, boom, "a panic with an error value unwraps to it")
				assert.Contains(t, string(pe.Stack), "(*comp).Start")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &rec{}
			a, w := newComp(r, "a"), newComp(r, "w")
			w.runErr, w.runPanic = make(chan error, 1), make(chan any, 1)
			g, _ := testGroup()
			g.Add("a", a)
			g.Add("w", w)
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			done := runAsync(t, g, ctx)
			closed(t, g.Ready(), generous, "ready")
			tt.trigger(cancel, w, g)
			err := wait(t, done, generous, "Run")
			tt.check(t, err, g.Cause())
			assert.Equal(t, tt.wantCode, ExitCode(err), "exit code for %v", err)
			assert.Equal(t, 1, a.calls(), "a stopped once")
			assert.Equal(t, 1, w.calls(), "w stopped once, even after its Start returned")
			assert.Equal(t, []string{"w", "a"}, r.only("stop:"))
		})
	}
}

// TestStartContext: the context passed to Start is not cancelled when the
// shutdown begins, only after the component's Stop has returned, and then
// with the shutdown's cause; it keeps the caller's values.
func TestStartContext(t *testing.T) {
	type key struct{}
	r := &rec{}
	a, b := newComp(r, "a"), newComp(r, "b")
	var aCtxErrAtStopOfB error
	b.onStop = func(*comp) {
		ctx, _, _ := a.contexts()
		aCtxErrAtStopOfB = ctx.Err()
	}
	g, _ := testGroup()
	g.Add("a", a)
	g.Add("b", b)
	boom := errors.New("why")
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), key{}, "v"))
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	cancel(boom)
	require.NoError(t, wait(t, done, generous, "Run"))

	assert.NoError(t, aCtxErrAtStopOfB, "a's Start context was cancelled before a was stopped")
	aStart, aStop, aStopErr := a.contexts()
	assert.Equal(t, "v", aStart.Value(key{}), "Start context keeps the caller's values")
	assert.ErrorIs(t, context.Cause(aStart), boom, "Start context cancelled with the shutdown's cause")
	assert.NoError(t, aStopErr, "stop context already done when Stop was called")
	assert.Equal(t, "v", aStop.Value(key{}), "stop context keeps the caller's values")
	deadline, ok := aStop.Deadline()
	require.True(t, ok, "stop context has the shutdown deadline")
	assert.WithinDuration(t, time.Now().Add(2*time.Second), deadline, 2*time.Second)
}

// TestDrain: readiness turns off at the first moment of the drain, drain
// hooks run before any Stop, and the Group keeps serving for the drain delay.
func TestDrain(t *testing.T) {
	r := &rec{}
	a, b := newComp(r, "a"), newComp(r, "b")
	const delay = 300 * time.Millisecond
	probe := func(h http.Handler) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		return w.Code
	}
	g, ev := testGroup(WithDrainDelay(delay))
	var readyAtDrain, liveAtDrain int
	drained := make(chan struct{})
	ev.ch = make(chan Event, 64)
	g.Add("a", readyComp{a})
	g.Add("b", readyComp{b})
	assert.Equal(t, http.StatusServiceUnavailable, probe(g.ReadyHandler()), "ready before Run")
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	assert.Equal(t, http.StatusOK, probe(g.ReadyHandler()), "ready while running")
	assert.Equal(t, http.StatusOK, probe(g.LiveHandler()), "live while running")
	go func() {
		for e := range ev.ch {
			if e.Kind == EventPhase && e.Phase == PhaseDraining {
				readyAtDrain, liveAtDrain = probe(g.ReadyHandler()), probe(g.LiveHandler())
				close(drained)
				return
			}
		}
	}()
	cancel()
	require.NoError(t, wait(t, done, generous, "Run"))
	closed(t, drained, generous, "drain event")
	assert.Equal(t, http.StatusServiceUnavailable, readyAtDrain, "ready at the drain")
	assert.Equal(t, http.StatusOK, liveAtDrain, "live at the drain")
	assert.Equal(t, http.StatusServiceUnavailable, probe(g.LiveHandler()), "live after Run")

	all := r.all()
	require.Len(t, all, 8)
	assert.Equal(t, []string{"start:a", "ready:a", "start:b", "ready:b"}, all[:4])
	assert.ElementsMatch(t, []string{"drain:b", "drain:a"}, all[4:6], "both drained (concurrently) before any Stop")
	assert.Equal(t, []string{"stop:b", "stop:a"}, all[6:])
	d, _ := ev.phase(PhaseDraining)
	s, _ := ev.phase(PhaseStopping)
	assert.GreaterOrEqual(t, s.Time.Sub(d.Time), delay, "stopped before the drain delay")
}

// TestStopsAfterDeadline: a Stop that does not return is abandoned at the
// deadline (the budget less the reserve of what stops after it) and named;
// the others are still stopped, exactly once, and the one after it with a
// live context; Run returns within the budget.
func TestStopsAfterDeadline(t *testing.T) {
	r := &rec{}
	a, hung, c := newComp(r, "a"), newComp(r, "hung"), newComp(r, "c")
	hung.stopHang = make(chan struct{})
	t.Cleanup(func() { close(hung.stopHang) })
	const budget = 500 * time.Millisecond
	g, ev := testGroup(WithShutdownTimeout(budget))
	g.Add("a", a)
	g.Add("hung", hung)
	g.Add("c", c)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	began := time.Now()
	cancel()
	err := wait(t, done, generous, "Run")
	took := time.Since(began)

	require.Error(t, err)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.Equal(t, ExitTimeout, ExitCode(err))
	var ce *ComponentError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "hung", ce.Component)
	assert.Contains(t, err.Error(), "stop hung: Stop did not return")
	assert.Equal(t, []string{"c", "hung", "a"}, r.only("stop:"))
	for _, x := range []*comp{a, hung, c} {
		assert.Equal(t, 1, x.calls(), "%s stopped once", x.name)
	}
	_, aStop, aErr := a.contexts()
	assert.NoError(t, aErr, "a, stopped after the abandoned one, got a live context")
	dl, ok := aStop.Deadline()
	require.True(t, ok)
	assert.False(t, dl.After(began.Add(budget)), "a's context ends within the budget")
	ab, abandoned := ev.first(EventAbandoned, "hung")
	require.True(t, abandoned, "abandoned event")
	st, _ := ev.first(EventStopping, "hung")
	assert.False(t, ab.Time.Before(st.Deadline), "abandoned at its deadline, not before")
	// Run returns within the budget (plus scheduling slack).
	assert.Less(t, took, budget+time.Second)
}

// TestStartIgnoresStop: a Start that does not return after its Stop (nor
// when its context is cancelled) is abandoned and named.
func TestStartIgnoresStop(t *testing.T) {
	r := &rec{}
	a := newComp(r, "a")
	a.hangStart = make(chan struct{})
	t.Cleanup(func() { close(a.hangStart) })
	g, _ := testGroup(WithShutdownTimeout(300 * time.Millisecond))
	g.Add("a", a)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	cancel()
	err := wait(t, done, generous, "Run")
	assert.ErrorIs(t, err, ErrTimeout)
	assert.Contains(t, err.Error(), "stop a: Start did not return after Stop")
}

// TestStartReturnsAfterStop: what a Start returns after its Stop is an
// error unless it only says the component was stopped.
func TestStartReturnsAfterStop(t *testing.T) {
	boom := errors.New("flush failed")
	for _, tt := range []struct {
		ret     error
		wantErr bool
	}{
		{nil, false},
		{context.Canceled, false},
		{http.ErrServerClosed, false},
		{fmt.Errorf("wrapped: %w", http.ErrServerClosed), false},
		{boom, true},
	} {
		t.Run(fmt.Sprint(tt.ret), func(t *testing.T) {
			g, _ := testGroup()
			g.Add("w", Func(func(ctx context.Context) error {
				<-ctx.Done()
				return tt.ret
			}))
			ctx, cancel := context.WithCancel(context.Background())
			done := runAsync(t, g, ctx)
			closed(t, g.Ready(), generous, "ready")
			cancel()
			err := wait(t, done, generous, "Run")
			if !tt.wantErr {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, boom)
			var ce *ComponentError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, PhaseStopping, ce.Phase)
		})
	}
}

// TestStopErrors: errors and panics of Stop are reported, tagged with the
// component and phase, and the other components still stop.
func TestStopErrors(t *testing.T) {
	r := &rec{}
	boom := errors.New("close failed")
	a, b, c := newComp(r, "a"), newComp(r, "b"), newComp(r, "c")
	b.stopErr = boom
	c.stopPanic = "stop panic"
	g, _ := testGroup()
	for _, x := range []*comp{a, b, c} {
		g.Add(x.name, x)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	cancel()
	err := wait(t, done, generous, "Run")
	assert.ErrorIs(t, err, boom)
	var pe *PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "stop panic", pe.Value)
	assert.Contains(t, err.Error(), "stop b: close failed")
	assert.Contains(t, err.Error(), "stop c: panic: stop panic")
	assert.Equal(t, ExitFailure, ExitCode(err))
	assert.Equal(t, []string{"c", "b", "a"}, r.only("stop:"))
	// c panicked in Stop: its Start is ended by its cancelled context.
	closed(t, c.startDone, generous, "c's Start returned")
}

// TestSignals: the first signal begins the shutdown, the second forces it:
// the stop context is cancelled with ErrForced and Run returns at once.
func TestSignals(t *testing.T) {
	r := &rec{}
	a, b := newComp(r, "a"), newComp(r, "b")
	a.stopHang = make(chan struct{}) // would hold Run until the deadline
	t.Cleanup(func() { close(a.stopHang) })
	g, ev := testGroup(WithSignals(syscall.SIGUSR1), WithShutdownTimeout(time.Minute), WithDrainDelay(30*time.Second))
	ev.ch = make(chan Event, 64)
	g.Add("a", a)
	g.Add("b", b)
	done := runAsync(t, g, context.Background())
	closed(t, g.Ready(), generous, "ready")

	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGUSR1))
	waitEvent(t, ev.ch, func(e Event) bool { return e.Kind == EventPhase && e.Phase == PhaseDraining })
	var se *SignalError
	require.ErrorAs(t, g.Cause(), &se)
	assert.Equal(t, syscall.SIGUSR1, se.Signal)

	began := time.Now()
	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGUSR1))
	err := wait(t, done, generous, "Run after the second signal")
	assert.Less(t, time.Since(began), 5*time.Second, "forced Run returns promptly")
	assert.ErrorIs(t, err, ErrForced)
	assert.Equal(t, ExitForced, ExitCode(err))
	assert.Contains(t, err.Error(), "stop a: Stop did not return before the shutdown was forced")
	_, bStop, _ := b.contexts()
	assert.ErrorIs(t, context.Cause(bStop), ErrForced, "b saw the forced context")
	assert.Equal(t, 1, a.calls())
	assert.Equal(t, 1, b.calls())
}

func waitEvent(t *testing.T, ch <-chan Event, match func(Event) bool) Event {
	t.Helper()
	limit := time.After(generous)
	for {
		select {
		case e := <-ch:
			if match(e) {
				return e
			}
		case <-limit:
			t.Fatal("event not seen")
		}
	}
}

// TestSignalDuringStart: a signal while a component is starting aborts the
// start, stops what started, and is a clean stop.
func TestSignalDuringStart(t *testing.T) {
	r := &rec{}
	a, b := newComp(r, "a"), newComp(r, "b")
	b.gate = make(chan struct{}) // b never gets ready; it honours its ctx
	g, _ := testGroup(WithSignals(syscall.SIGUSR1))
	g.Add("a", readyComp{a})
	g.Add("b", readyComp{b})
	g.Add("c", newComp(r, "c"))
	done := runAsync(t, g, context.Background())
	wait(t, waitFor(r, "start:b"), generous, "b starting")
	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGUSR1))
	err := wait(t, done, generous, "Run")
	assert.NoError(t, err)
	assert.Equal(t, ExitOK, ExitCode(err))
	assert.Equal(t, []string{"b", "a"}, r.only("stop:"), "b was starting: it is stopped too")
	assert.Equal(t, []string{"a", "b"}, r.only("start:"))
}

// TestContextDoneBeforeRun: a Run whose context is already done starts
// nothing and returns nil.
func TestContextDoneBeforeRun(t *testing.T) {
	r := &rec{}
	g, _ := testGroup()
	g.Add("a", newComp(r, "a"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.NoError(t, g.Run(ctx))
	assert.Empty(t, r.all())
}

// TestBadInput: every configuration error is reported before anything
// starts, names the problem, and matches ErrInvalid.
func TestBadInput(t *testing.T) {
	var nilComp *comp
	tests := []struct {
		name  string
		opts  []Option
		add   func(g *Group, c Component)
		wants string
	}{
		{"empty name", nil, func(g *Group, c Component) { g.Add("", c) }, "empty name"},
		{"duplicate name", nil, func(g *Group, c Component) { g.Add("x", c); g.Add("x", c) }, `duplicate component name "x"`},
		{"nil component", nil, func(g *Group, _ Component) { g.Add("n", nil) }, `component "n" is nil`},
		{"typed nil component", nil, func(g *Group, _ Component) { g.Add("n", nilComp) }, `component "n" is nil`},
		{"negative shutdown timeout", []Option{WithShutdownTimeout(-1)}, nil, "WithShutdownTimeout(-1ns): a timeout must be positive"},
		{"zero shutdown timeout", []Option{WithShutdownTimeout(0)}, nil, "WithShutdownTimeout(0s): a timeout must be positive"},
		{"negative drain delay", []Option{WithDrainDelay(-time.Second)}, nil, "WithDrainDelay(-1s): a delay must not be negative"},
		{"negative start timeout", []Option{WithStartTimeout(-time.Second)}, nil, "WithStartTimeout(-1s): a timeout must be positive"},
		{"zero start timeout", []Option{WithStartTimeout(0)}, nil, "WithStartTimeout(0s): a timeout must be positive"},
		{"drain equals budget", []Option{WithShutdownTimeout(time.Second), WithDrainDelay(time.Second)}, nil, "drain delay 1s is not shorter than the shutdown timeout 1s"},
		{"drain above budget", []Option{WithShutdownTimeout(time.Second), WithDrainDelay(2 * time.Second)}, nil, "drain delay 2s is not shorter"},
		{"default drain above budget", []Option{WithShutdownTimeout(3 * time.Second)}, nil, "the default drain delay 5s is not shorter than the shutdown timeout 3s: set WithDrainDelay"},
		{"unknown dependency", nil, func(g *Group, c Component) { g.Add("x", c, After("nope")) }, `component "x" needs "nope", which is not in the Group`},
		{"self dependency", nil, func(g *Group, c Component) { g.Add("x", c, After("x")) }, `component "x" needs itself`},
		{"cycle", nil, func(g *Group, c Component) {
			g.Add("x", c, After("z"))
			g.Add("y", c, After("x"))
			g.Add("z", c, After("y"))
		}, "dependency cycle: x -> z -> y -> x"},
		{"stop timeout not positive", nil, func(g *Group, c Component) { g.Add("x", c, StopTimeout(0)) }, `component "x": lifecycle: invalid configuration: StopTimeout(0s): a timeout must be positive`},
		{"stop timeout above budget", []Option{WithShutdownTimeout(time.Second), WithDrainDelay(0)}, func(g *Group, c Component) { g.Add("x", c, StopTimeout(2*time.Second)) }, `component "x": StopTimeout(2s) is longer than the shutdown timeout 1s`},
		{"restart without New", nil, func(g *Group, c Component) {
			g.Add("x", c, Restart(RestartPolicy{MaxRestarts: 1, Window: time.Second}))
		}, `component "x" cannot be started again: give its RestartPolicy a New function`},
		{"restart policy without window", nil, func(g *Group, _ Component) {
			g.Add("x", Func(func(context.Context) error { return nil }), Restart(RestartPolicy{MaxRestarts: 1}))
		}, "Restart: Window 0s is not positive"},
		{"invalid nested Group", nil, func(g *Group, _ Component) {
			child := New(WithShutdownTimeout(time.Second), WithDrainDelay(time.Second))
			g.Add("child", child)
		}, `component "child": lifecycle: invalid configuration: drain delay 1s is not shorter`},
		{"Group in itself", nil, func(g *Group, _ Component) { g.Add("self", g) }, "a Group is a component of itself"},
		{"nil signal", []Option{WithSignals(nil)}, nil, "nil signal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &rec{}
			c := newComp(r, "c")
			g := New(append([]Option{WithSignals(), WithLogger(nil)}, tt.opts...)...)
			g.Add("first", c)
			if tt.add != nil {
				tt.add(g, c)
			}
			err := g.Run(context.Background())
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), tt.wants)
			assert.Equal(t, ExitInvalid, ExitCode(err))
			assert.Empty(t, r.all(), "something started")
			assert.ErrorIs(t, g.Run(context.Background()), ErrInvalid, "a second Run")
		})
	}

	t.Run("Add after Run, Run twice, Start after Run", func(t *testing.T) {
		g, _ := testGroup()
		g.Add("a", newComp(&rec{}, "a"))
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(t, g, ctx)
		closed(t, g.Ready(), generous, "ready")
		g.Add("b", newComp(&rec{}, "b"))
		err := g.Run(ctx)
		assert.ErrorIs(t, err, ErrInvalid)
		assert.Contains(t, err.Error(), "already running")
		assert.ErrorIs(t, g.Start(ctx), ErrInvalid)
		cancel()
		require.NoError(t, wait(t, done, generous, "Run"))
		assert.ErrorIs(t, g.Run(context.Background()), ErrInvalid, "Run after Run")
	})
	t.Run("zero Group has defaults", func(t *testing.T) {
		var g Group
		g.Add("a", Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx) }()
		closed(t, g.Ready(), generous, "ready")
		assert.Equal(t, DefaultShutdownTimeout, g.cfg.shutdownTimeout)
		assert.Equal(t, DefaultDrainDelay, g.cfg.drainDelay)
		assert.Equal(t, DefaultStartTimeout, g.cfg.startTimeout)
		cancel()
		assert.NoError(t, wait(t, done, generous, "Run"))
	})
}

// TestExitCode maps errors to the documented codes.
func TestExitCode(t *testing.T) {
	comp := &ComponentError{Component: "x", Phase: PhaseRunning, Err: errors.New("boom")}
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{comp, ExitFailure},
		{invalid("bad"), ExitInvalid},
		{&ComponentError{Component: "x", Phase: PhaseStopping, Err: ErrTimeout}, ExitTimeout},
		{errors.Join(comp, &ComponentError{Component: "y", Phase: PhaseStopping, Err: ErrTimeout}), ExitTimeout},
		{errors.Join(ErrForced, comp, ErrTimeout), ExitForced},
	}
	for _, tt := range tests {
		if have := ExitCode(tt.err); have != tt.want {
			t.Errorf("ExitCode(%v): want %d, have %d", tt.err, tt.want, have)
		}
	}
}
