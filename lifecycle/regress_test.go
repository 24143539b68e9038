package lifecycle

// Regression tests for the findings of a review of the engine.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFuncNeverSkipped: a Func worker is ready once its fn is being called,
// so a Group stopped the moment it runs has called every worker's fn (a Stop
// that came first would skip it).
func TestFuncNeverSkipped(t *testing.T) {
	for i := range 300 {
		var entered atomic.Bool
		ctx, cancel := context.WithCancel(context.Background())
		g := New(WithSignals(), WithLogger(nil), WithDrainDelay(0), WithObserver(func(ev Event) {
			if ev.Kind == EventPhase && ev.Phase == PhaseRunning {
				cancel()
			}
		}))
		g.Add("worker", Func(func(ctx context.Context) error {
			entered.Store(true)
			<-ctx.Done()
			return nil
		}))
		require.NoError(t, wait(t, runAsync(t, g, ctx), generous, "Run"))
		cancel()
		if !entered.Load() {
			t.Fatalf("run %d: the worker's fn was never called", i)
		}
	}
}

// gatedGroup is a nested Group whose Start goroutine has not reached
// Group.Start yet when the parent stops it: the window between the parent's
// launch and the child's first line, held open.
type gatedGroup struct {
	*Group
	entered chan struct{}
	gate    chan struct{}
	once    *sync.Once
}

func (w gatedGroup) Start(ctx context.Context) error {
	close(w.entered)
	<-w.gate
	return w.Group.Start(ctx)
}

func (w gatedGroup) Stop(ctx context.Context) error {
	err := w.Group.Stop(ctx)
	w.once.Do(func() { close(w.gate) })
	return err
}

// A shutdown (context, signal, start timeout) while a nested Group
// is being launched: the parent calls the child's Stop before its Start, the
// child's Start then returns ErrInvalid, and the parent reports it as a stop
// error. A clean shutdown returns an error and ExitCode 2 (ExitInvalid).
func TestNestedStoppedBeforeItsStart(t *testing.T) {
	child := New(WithLogger(nil))
	child.Add("c", newComp(&rec{}, "c"))
	w := gatedGroup{Group: child, entered: make(chan struct{}), gate: make(chan struct{}), once: &sync.Once{}}
	t.Cleanup(func() { w.once.Do(func() { close(w.gate) }) })
	parent, _ := testGroup()
	parent.Add("child", w)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, parent, ctx)
	closed(t, w.entered, generous, "child launched")
	cancel()
	err := wait(t, done, generous, "Run")
	assert.NoError(t, err, "a shutdown asked for during the start is clean")
	assert.Equal(t, ExitOK, ExitCode(err))
}

// blockingDrainer is a component whose Drain blocks until release is closed.
type blockingDrainer struct {
	readyComp
	release chan struct{}
}

func (b blockingDrainer) Drain() { <-b.release }

// Drain hooks are called synchronously by Run, outside the
// deadline: one that blocks keeps Run from returning, whereas the contract is
// "Run returns no later than the deadline plus a small, fixed grace, whatever
// components do". (Same for a nested Group's Drainers.)
func TestBlockingDrainBoundedByDeadline(t *testing.T) {
	const budget = 300 * time.Millisecond
	c := blockingDrainer{readyComp{newComp(&rec{}, "c")}, make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(c.release) }) }
	t.Cleanup(release)
	g, _ := testGroup(WithShutdownTimeout(budget))
	g.Add("c", c)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	cancel()
	limit := budget + 3*time.Second // very generous
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrTimeout, "the Drain that did not return is named")
	case <-time.After(limit):
		t.Errorf("Run has not returned %v after the shutdown began, with a budget of %v", limit, budget)
		release()
		<-done
	}
}

// A start aborted (context, signal, start timeout) while a Hooks
// component's start hook is still running: the Group calls Stop, and Hooks
// calls the stop hook at once, concurrently with the start hook (a pool closed
// while it is being opened). The start hook's context is only cancelled after
// Stop has returned, so the start hook cannot even be told first.
func TestHooksStopDuringStartHook(t *testing.T) {
	var inStart, overlap atomic.Bool
	entered := make(chan struct{})
	c := Hooks(
		func(ctx context.Context) error {
			inStart.Store(true)
			defer inStart.Store(false)
			close(entered)
			<-ctx.Done() // a dial that honours its context
			return ctx.Err()
		},
		func(context.Context) error {
			if inStart.Load() {
				overlap.Store(true)
			}
			return nil
		})
	g, _ := testGroup()
	g.Add("pool", c)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, entered, generous, "start hook running")
	cancel()
	_ = wait(t, done, generous, "Run")
	assert.False(t, overlap.Load(), "stop hook called while the start hook was still running")
}

// LiveHandler's doc promises 503 "not live: stopped"; it answers
// "not ready: stopped".
func TestLiveHandlerBody(t *testing.T) {
	g, _ := testGroup()
	g.Add("a", newComp(&rec{}, "a"))
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	cancel()
	require.NoError(t, wait(t, done, generous, "Run"))
	w := httptest.NewRecorder()
	g.LiveHandler().ServeHTTP(w, httptest.NewRequest("GET", "/livez", nil))
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "not live: stopped\n", w.Body.String())
}

// A shutdown that begins while the last component is being
// launched does not stop the start: startAll does not look at the shutdown
// after the last launch, so the Group enters PhaseRunning and closes Ready
// after the shutdown began (readiness 200, a parent starts its next
// components), then drains for the drain delay.
func TestNoRunningAfterShutdownBegan(t *testing.T) {
	r := &rec{}
	ev := &events{}
	shutdown := make(chan struct{})
	var g *Group
	var stopped sync.WaitGroup
	g = New(WithSignals(), WithLogger(nil), WithDrainDelay(0), WithShutdownTimeout(2*time.Second),
		WithObserver(func(e Event) {
			ev.observe(e)
			switch {
			case e.Kind == EventShutdown:
				close(shutdown)
			case e.Kind == EventStarting && e.Component == "last":
				// Stop comes while the last component is being launched.
				stopped.Go(func() { _ = g.Stop(context.Background()) })
			}
		}))
	g.Add("a", readyComp{newComp(r, "a")})
	g.Add("last", newComp(r, "last"))
	require.NoError(t, wait(t, runAsync(t, g, context.Background()), generous, "Run"))
	stopped.Wait()
	var sawShutdown bool
	for _, e := range ev.all() {
		if e.Kind == EventShutdown {
			sawShutdown = true
		}
		if sawShutdown && e.Kind == EventPhase && e.Phase == PhaseRunning {
			t.Errorf("the Group entered PhaseRunning after the shutdown began")
		}
	}
}

// For a Group run by Run, Stop's doc says it "waits until Run has
// ended"; it returns when the stop phase ends, before Run has moved to
// PhaseStopped, unregistered its signals and returned.
func TestStopWaitsForRun(t *testing.T) {
	hold := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(hold) }) })
	g := New(WithSignals(), WithLogger(nil), WithDrainDelay(0), WithObserver(func(e Event) {
		if e.Kind == EventPhase && e.Phase == PhaseStopped {
			<-hold // Run is still ending
		}
	}))
	g.Add("a", newComp(&rec{}, "a"))
	done := runAsync(t, g, context.Background())
	closed(t, g.Ready(), generous, "ready")
	stopReturned := make(chan error, 1)
	go func() { stopReturned <- g.Stop(context.Background()) }()
	early := false
	select {
	case <-stopReturned:
		early = true
		t.Errorf("Stop returned while Run had not returned (nor cancelled the Start contexts)")
	case <-time.After(time.Second): // Stop blocking is the expected outcome
	}
	once.Do(func() { close(hold) })
	require.NoError(t, wait(t, done, generous, "Run"))
	if !early {
		_ = wait(t, stopReturned, generous, "Stop after Run")
	}
}

// A nested Group whose start failed is stopping what it started
// (with its own shutdown timeout) when the parent calls Stop with a context
// that runs out first: Stop returns as soon as its ctx is done, calls end
// anyway, and so cancels the Start context of a component whose Stop is still
// running (neither returned nor abandoned), reports PhaseStopped while it is
// still stopping, and names nothing as abandoned.
func TestComponentStopDuringFailedStart(t *testing.T) {
	r := &rec{}
	a := newComp(r, "a")
	a.stopHang = make(chan struct{})
	inStop := make(chan struct{})
	a.onStop = func(*comp) { close(inStop) }
	var once sync.Once
	release := func() { once.Do(func() { close(a.stopHang) }) }
	t.Cleanup(release)
	bad := newComp(r, "bad")
	bad.startErr = errors.New("no db")
	child := New(WithLogger(nil), WithShutdownTimeout(time.Minute))
	child.Add("a", readyComp{a})
	child.Add("bad", readyComp{bad})
	started := make(chan error, 1)
	go func() { started <- child.Start(context.Background()) }()
	closed(t, inStop, generous, "a stopping")

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the parent's budget has run out
	err := child.Stop(ctx)
	aStart, _, _ := a.contexts()
	aStartErr := aStart.Err()
	phase := child.Phase()
	release()
	startErr := wait(t, started, generous, "Start")

	// v2: the cancelled context forces the stop: a is abandoned within the
	// force grace, named, and only then is its Start context cancelled and
	// the Group stopped.
	assert.Error(t, aStartErr, "a was abandoned: its Start context is cancelled")
	assert.Equal(t, PhaseStopped, phase)
	assert.ErrorIs(t, err, ErrForced)
	assert.Contains(t, fmt.Sprint(err), "stop a: Stop did not return before the shutdown was forced")
	assert.Contains(t, fmt.Sprint(err, startErr), "start bad: no db", "the start failure is reported")
}
