package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRestartWithBackoff: a worker that fails three times, then runs, is
// started again after each failure with the policy's delays (measured on
// the events), and the Group never stops.
func TestRestartWithBackoff(t *testing.T) {
	const backoff = 40 * time.Millisecond
	var runs atomic.Int32
	healthy := make(chan struct{})
	g, ev := testGroup()
	g.Add("db", OnStop(func(context.Context) error { return nil }))
	g.Add("refresher", Func(func(ctx context.Context) error {
		if n := runs.Add(1); n <= 3 {
			return fmt.Errorf("refresh %d failed", n)
		}
		close(healthy)
		<-ctx.Done()
		return nil
	}), Restart(RestartPolicy{Backoff: backoff, MaxBackoff: time.Second, MaxRestarts: 5, Window: time.Minute}))
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, healthy, generous, "healthy after three failures")
	assert.Equal(t, PhaseRunning, g.Phase(), "the Group never stopped")
	for g.Status()[1].State != StateRunning { // the loop takes the news
		time.Sleep(time.Millisecond)
	}
	st := g.Status()
	assert.Equal(t, StateRunning, st[1].State)
	assert.Equal(t, 3, st[1].Restarts)
	cancel()
	require.NoError(t, wait(t, done, generous, "Run"))

	var exits, starts []time.Time
	var delays []time.Duration
	for _, e := range ev.all() {
		if e.Component != "refresher" {
			continue
		}
		switch e.Kind {
		case EventRestarting:
			delays = append(delays, e.Delay)
			exits = append(exits, e.Time)
		case EventStarting:
			starts = append(starts, e.Time)
		}
	}
	require.Len(t, delays, 3)
	require.Len(t, starts, 4)
	for i, d := range delays {
		want := backoff << i // doubles with each failure in a row
		assert.LessOrEqual(t, d, want, "delay %d", i)
		assert.GreaterOrEqual(t, d, want*4/5, "delay %d: at most a fifth of jitter", i)
		assert.GreaterOrEqual(t, starts[i+1].Sub(exits[i]), d, "restart %d waited its delay", i)
	}
	_, stopped := ev.first(EventStopping, "db")
	assert.True(t, stopped)
}

// TestRestartIntensityEscalates: a component failing faster than the
// policy allows gives up: the Group shuts down, and the error names it with
// its last errors.
func TestRestartIntensityEscalates(t *testing.T) {
	var runs atomic.Int32
	g, _ := testGroup()
	g.Add("pusher", Func(func(context.Context) error {
		return fmt.Errorf("push %d refused", runs.Add(1))
	}), Restart(RestartPolicy{MaxRestarts: 2, Window: time.Minute}))
	err := wait(t, runAsync(t, g, context.Background()), generous, "Run")
	var ge *GaveUpError
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, 2, ge.Restarts)
	assert.Contains(t, err.Error(), "pusher")
	assert.Contains(t, err.Error(), "gave up after 2 restarts within 1m0s; last errors: push 1 refused; push 2 refused; push 3 refused")
	assert.Equal(t, ExitFailure, ExitCode(err))
	assert.EqualValues(t, 3, runs.Load())
}

// TestOptionalGivesUp: an optional component that gives up leaves the Group
// running and ready; /readyz?verbose says it failed.
func TestOptionalGivesUp(t *testing.T) {
	boom := errors.New("cache backend down")
	g, ev := testGroup()
	g.Add("api", readyComp{newComp(&rec{}, "api")})
	g.Add("cache", Func(func(ctx context.Context) error {
		<-g.Ready()
		return boom
	}), Optional(), After())
	h := g.ReadyHandler()
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	for {
		if _, ok := ev.first(EventGaveUp, "cache"); ok {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned %v: an optional component shut the Group down", err)
		case <-time.After(time.Millisecond):
		}
	}
	// The stop after giving up may still be running: wait for it.
	for g.Status()[1].State != StateFailed {
		time.Sleep(time.Millisecond)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz?verbose", nil))
	assert.Equal(t, http.StatusOK, w.Code, "an optional component does not gate readiness")
	assert.Equal(t, "[+]lifecycle ok\n[+]api ok\n[-]cache failed: failed: run cache: cache backend down\nreadyz check passed\n", w.Body.String())
	assert.Equal(t, PhaseRunning, g.Phase())
	cancel()
	assert.NoError(t, wait(t, done, generous, "Run"), "giving up is not an error of the run")
}

// TestBackoffAtShutdownNotRestarted: a component waiting in its backoff when
// the shutdown begins is not started again, and was stopped once per start.
func TestBackoffAtShutdownNotRestarted(t *testing.T) {
	var starts, stops atomic.Int32
	failed := make(chan struct{}, 1)
	g, ev := testGroup()
	g.Add("w", &countingComp{starts: &starts, stops: &stops, failed: failed},
		Restart(RestartPolicy{Backoff: time.Hour, MaxRestarts: 3, Window: time.Hour, New: func() Component {
			return &countingComp{starts: &starts, stops: &stops, failed: failed}
		}}))
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	<-failed
	for {
		if _, ok := ev.first(EventRestarting, "w"); ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	require.NoError(t, wait(t, done, generous, "Run"))
	assert.EqualValues(t, 1, starts.Load(), "not started again")
	assert.EqualValues(t, 1, stops.Load(), "stopped once for its one start")
	assert.Equal(t, StateStopped, g.Status()[0].State)
}

// countingComp fails once running, and counts its Starts and Stops.
type countingComp struct {
	starts, stops *atomic.Int32
	failed        chan struct{}
}

func (c *countingComp) Start(context.Context) error {
	c.starts.Add(1)
	c.failed <- struct{}{}
	return errors.New("lost the connection")
}

func (c *countingComp) Stop(context.Context) error { c.stops.Add(1); return nil }

// TestRestartFreshInstance: New gives a fresh instance per restart, for a
// component that cannot be started twice; each instance is stopped once.
func TestRestartFreshInstance(t *testing.T) {
	var made atomic.Int32
	ready := make(chan struct{})
	mk := func() Component {
		n := made.Add(1)
		c := newComp(&rec{}, fmt.Sprint("srv", n))
		if n == 1 {
			c.startErr = errors.New("bind failed")
		} else {
			go func() { <-c.ready; close(ready) }()
		}
		return readyComp{c}
	}
	g, _ := testGroup()
	g.Add("srv", mk(), Restart(RestartPolicy{MaxRestarts: 3, Window: time.Minute, New: mk}))
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, ready, generous, "second instance ready")
	closed(t, g.Ready(), generous, "Group ready")
	cancel()
	require.NoError(t, wait(t, done, generous, "Run"))
	assert.EqualValues(t, 2, made.Load())
}

// TestRestartResetAfterGoodRun: failures separated by good runs longer than
// ResetAfter never add up to the intensity limit, and the delay starts from
// Backoff again.
func TestRestartResetAfterGoodRun(t *testing.T) {
	u := &unit{}
	p := &RestartPolicy{Backoff: time.Second, MaxBackoff: time.Minute, MaxRestarts: 1, Window: time.Hour, ResetAfter: time.Minute}
	now := time.Now()
	for i := range 5 {
		u.startedAt = now
		now = now.Add(2 * time.Minute) // ran well for longer than ResetAfter
		u.failures = append(u.failures, failure{at: now, err: errors.New("x")})
		d, ok := p.next(u, now)
		require.True(t, ok, "failure %d: gave up though it ran well in between", i)
		assert.LessOrEqual(t, d, time.Second, "failure %d: the delay starts from Backoff", i)
	}
	// A failure soon after the last: two within the window, more than MaxRestarts allows.
	u.startedAt = now
	now = now.Add(time.Second)
	u.failures = append(u.failures, failure{at: now, err: errors.New("y")})
	d, ok := p.next(u, now)
	require.False(t, ok, "two failures within the window, without a good run between: more than MaxRestarts")
	assert.Zero(t, d)
}
