package lifecycle

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// barrier is closed once n parties have arrived: a Start that waits on it
// can only go on if n Starts run at the same time.
type barrier struct {
	n       int32
	arrived atomic.Int32
	all     chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: int32(n), all: make(chan struct{})} }

func (b *barrier) arrive() {
	if b.arrived.Add(1) == b.n {
		close(b.all)
	}
}

// TestIndependentStartConcurrently: components that need nothing start at
// once, each without waiting for the others to be ready. Each becomes ready
// only when all twenty have been started, which a one-by-one start never
// reaches.
func TestIndependentStartConcurrently(t *testing.T) {
	const n = 20
	b := newBarrier(n)
	g, _ := testGroup()
	for i := range n {
		g.Add(string(rune('a'+i)), Hooks(func(ctx context.Context) error {
			b.arrive()
			select {
			case <-b.all:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, nil), After())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "all ready")
	cancel()
	require.NoError(t, wait(t, done, generous, "Run"))
}

// TestIndependentStopConcurrently: two servers that need nothing stop at the
// same time, so each Stop can wait for the other to have begun.
func TestIndependentStopConcurrently(t *testing.T) {
	b := newBarrier(2)
	stop := func(context.Context) error {
		b.arrive()
		select {
		case <-b.all:
			return nil
		case <-time.After(generous):
			return errors.New("the other Stop was not called meanwhile")
		}
	}
	g, _ := testGroup(WithShutdownTimeout(2 * generous))
	g.Add("http", OnStop(stop), After())
	g.Add("grpc", OnStop(stop), After())
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	cancel()
	require.NoError(t, wait(t, done, 3*generous, "Run"))
}

// TestDependencyOrder: a diamond. Each component starts after all it needs
// is ready and stops before any of it stops.
func TestDependencyOrder(t *testing.T) {
	r := &rec{}
	g, ev := testGroup()
	comps := map[string]*comp{}
	add := func(name string, needs ...string) {
		c := newComp(r, name)
		comps[name] = c
		g.Add(name, readyComp{c}, After(needs...))
	}
	add("db")
	add("cache", "db")
	add("queue")
	add("api", "db", "cache")
	add("worker", "queue", "db")
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	cancel()
	require.NoError(t, wait(t, done, generous, "Run"))

	idx := func(kind EventKind, name string) int {
		for i, e := range ev.all() {
			if e.Kind == kind && e.Component == name {
				return i
			}
		}
		t.Fatalf("no %v event for %s", kind, name)
		return -1
	}
	needs := map[string][]string{"cache": {"db"}, "api": {"db", "cache"}, "worker": {"queue", "db"}}
	for c, ds := range needs {
		for _, d := range ds {
			assert.Less(t, idx(EventReady, d), idx(EventStarting, c), "%s starts after %s is ready", c, d)
			assert.Less(t, idx(EventStopped, c), idx(EventStopping, d), "%s stops after %s has stopped", d, c)
		}
	}
	for _, c := range comps {
		assert.Equal(t, 1, c.calls(), "%s stopped once", c.name)
	}
}

// TestDefaultIsAChain: without After, each component needs the one added
// before it (the order of Add), and After() opts out.
func TestDefaultIsAChain(t *testing.T) {
	r := &rec{}
	g, _ := testGroup()
	for _, name := range []string{"a", "b", "c"} {
		g.Add(name, readyComp{newComp(r, name)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	cancel()
	require.NoError(t, wait(t, done, generous, "Run"))
	assert.Equal(t, []string{"a", "b", "c"}, r.only("ready:"))
	assert.Equal(t, []string{"c", "b", "a"}, r.only("stop:"))
}

// TestBudgetProtectsWhatStopsLast is the new user's service: a worker whose
// job in hand outlasts the budget, then a tracer flush and a pool that it
// uses. The worker is abandoned and named, with the stack it is stuck on;
// the tracer and the pool still stop, each with a live context; Run
// returns within the budget.
func TestBudgetProtectsWhatStopsLast(t *testing.T) {
	const budget = 2 * time.Second
	g, _ := testGroup(WithShutdownTimeout(budget))
	type stopSeen struct {
		name string
		err  error // ctx.Err() when Stop was called
		left time.Duration
	}
	var mu sync.Mutex
	var seen []stopSeen
	flush := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			dl, _ := ctx.Deadline()
			mu.Lock()
			seen = append(seen, stopSeen{name, ctx.Err(), time.Until(dl)})
			mu.Unlock()
			return ctx.Err()
		}
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	g.Add("pool", OnStop(flush("pool")))
	g.Add("tracer", OnStop(flush("tracer")), After("pool"))
	g.Add("worker", Worker(func(ctx context.Context, stopping <-chan struct{}) error {
		stuckInJob(release) // a job that ignores ctx and outlasts any budget
		return nil
	}), After("tracer", "pool"))

	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	began := time.Now()
	cancel()
	err := wait(t, done, generous, "Run")
	took := time.Since(began)

	assert.LessOrEqual(t, took, budget+250*time.Millisecond, "Run returns within the budget (plus scheduling slack)")
	require.ErrorIs(t, err, ErrTimeout)
	var ce *ComponentError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "worker", ce.Component)
	assert.Contains(t, string(ce.Stacks), "stuckInJob", "the stacks show where it is stuck")
	assert.NotContains(t, string(ce.Stacks), `"lifecycle.component":"pool"`, "no stacks of other components")
	assert.NotContains(t, string(ce.Stacks), `"lifecycle.component":"tracer"`, "no stacks of other components")
	for _, line := range strings.Split(err.Error(), "\n") {
		assert.Contains(t, line, "worker", "only the worker failed: %s", line)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 2)
	assert.Equal(t, "tracer", seen[0].name)
	assert.Equal(t, "pool", seen[1].name)
	for _, s := range seen {
		assert.NoError(t, s.err, "%s got a live context", s.name)
		assert.Greater(t, s.left, 50*time.Millisecond, "%s had time of its own", s.name)
	}
}

// stuckInJob blocks until release is closed; its name is looked for in the
// stacks of an abandoned component.
//
//go:noinline
func stuckInJob(release <-chan struct{}) { <-release }

// TestStopTimeout: a component's own stop timeout abandons it early, and
// what it needs gets the rest of the budget.
func TestStopTimeout(t *testing.T) {
	g, ev := testGroup(WithShutdownTimeout(5 * time.Second))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var poolErr atomic.Value
	g.Add("pool", OnStop(func(ctx context.Context) error { poolErr.Store(ctx.Err() == nil); return nil }))
	g.Add("slow", OnStop(func(context.Context) error { <-release; return nil }), StopTimeout(300*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	began := time.Now()
	cancel()
	err := wait(t, done, generous, "Run")
	assert.Less(t, time.Since(began), 3*time.Second, "abandoned at its own timeout, not the budget")
	require.ErrorIs(t, err, ErrTimeout)
	assert.Contains(t, err.Error(), "stop slow: Stop did not return within its stop timeout 300ms")
	assert.Equal(t, true, poolErr.Load(), "the pool's context was live")
	ab, ok := ev.first(EventAbandoned, "slow")
	require.True(t, ok)
	st, _ := ev.first(EventStopping, "slow")
	assert.False(t, ab.Time.Before(st.Deadline), "abandoned at its deadline, not before")
}

// TestShutdownFromInside: a component asks for the shutdown from its own
// goroutine, without blocking; Stop called with a context from inside the
// Group does not wait for itself.
func TestShutdownFromInside(t *testing.T) {
	t.Run("Shutdown", func(t *testing.T) {
		bye := errors.New("admin asked")
		g, _ := testGroup()
		returned := make(chan struct{})
		g.Add("admin", Func(func(ctx context.Context) error {
			g.Shutdown(bye)
			close(returned) // Shutdown did not block
			<-ctx.Done()
			return nil
		}))
		err := wait(t, runAsync(t, g, context.Background()), generous, "Run")
		closed(t, returned, generous, "Shutdown returned")
		assert.NoError(t, err)
		assert.ErrorIs(t, g.Cause(), bye)
	})
	t.Run("Stop from a request handler", func(t *testing.T) {
		g, _ := testGroup()
		stopped := make(chan error, 1)
		g.Add("admin", Func(func(ctx context.Context) error {
			// A handler's r.Context() comes from the Start context.
			stopped <- g.Stop(ctx)
			<-ctx.Done()
			return nil
		}))
		err := wait(t, runAsync(t, g, context.Background()), generous, "Run")
		assert.NoError(t, err)
		assert.NoError(t, wait(t, stopped, generous, "Stop"))
	})
	t.Run("Shutdown before Run", func(t *testing.T) {
		r := &rec{}
		g, _ := testGroup()
		g.Add("a", newComp(r, "a"))
		g.Shutdown(nil)
		assert.NoError(t, g.Run(context.Background()))
		assert.Empty(t, r.all(), "nothing started")
	})
}

// TestWorker: the work in hand completes after Stop with a live context;
// work that outlasts the component's time is cancelled with the cause, and
// Stop says so.
func TestWorker(t *testing.T) {
	t.Run("finishes the job in hand", func(t *testing.T) {
		g, _ := testGroup()
		inJob, finish := make(chan struct{}), make(chan struct{})
		var jobErr atomic.Value
		g.Add("worker", Worker(func(ctx context.Context, stopping <-chan struct{}) error {
			close(inJob)
			<-stopping // Stop came while the job runs
			close(finish)
			jobErr.Store(ctx.Err() == nil) // the job can still use ctx
			return nil
		}))
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(t, g, ctx)
		closed(t, inJob, generous, "in a job")
		cancel()
		closed(t, finish, generous, "stopping")
		assert.NoError(t, wait(t, done, generous, "Run"))
		assert.Equal(t, true, jobErr.Load())
	})
	t.Run("cancelled at its stop timeout", func(t *testing.T) {
		g, _ := testGroup(WithShutdownTimeout(5 * time.Second))
		var cause atomic.Value
		g.Add("worker", Worker(func(ctx context.Context, stopping <-chan struct{}) error {
			<-ctx.Done() // the job ignores stopping
			cause.Store(context.Cause(ctx))
			return ctx.Err()
		}), StopTimeout(500*time.Millisecond))
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(t, g, ctx)
		closed(t, g.Ready(), generous, "ready")
		cancel()
		err := wait(t, done, generous, "Run")
		assert.ErrorIs(t, err, ErrTimeout)
		assert.Contains(t, err.Error(), "stop worker: worker still busy when its time to stop ran out")
		assert.ErrorIs(t, cause.Load().(error), ErrTimeout)
		assert.Equal(t, ExitTimeout, ExitCode(err))
	})
	t.Run("Func cancels at Stop", func(t *testing.T) {
		g, _ := testGroup()
		var cause atomic.Value
		g.Add("f", Func(func(ctx context.Context) error {
			<-ctx.Done()
			cause.Store(context.Cause(ctx))
			return ctx.Err()
		}))
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(t, g, ctx)
		closed(t, g.Ready(), generous, "ready")
		cancel()
		assert.NoError(t, wait(t, done, generous, "Run"))
		assert.ErrorIs(t, cause.Load().(error), ErrStopped)
	})
}

// TestDrainOnlyWhenSomethingDrains: the drain delay is waited only by a
// Group with a Drainer or a readiness handler.
func TestDrainOnlyWhenSomethingDrains(t *testing.T) {
	const delay = 400 * time.Millisecond
	run := func(t *testing.T, g *Group) time.Duration {
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(t, g, ctx)
		closed(t, g.Ready(), generous, "ready")
		began := time.Now()
		cancel()
		require.NoError(t, wait(t, done, generous, "Run"))
		return time.Since(began)
	}
	t.Run("workers only: no delay", func(t *testing.T) {
		g, ev := testGroup(WithShutdownTimeout(time.Minute), WithDrainDelay(30*time.Second))
		g.Add("w", Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
		assert.Less(t, run(t, g), 10*time.Second)
		d, ok := ev.phase(PhaseDraining)
		require.True(t, ok, "readiness still turns off")
		assert.False(t, d.Deadline.After(d.Time), "no delay")
	})
	t.Run("a Drainer: the delay", func(t *testing.T) {
		g, _ := testGroup(WithDrainDelay(delay))
		g.Add("d", readyComp{newComp(&rec{}, "d")})
		assert.GreaterOrEqual(t, run(t, g), delay)
	})
	t.Run("a readiness handler: the delay", func(t *testing.T) {
		g, _ := testGroup(WithDrainDelay(delay))
		g.Add("w", Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
		_ = g.ReadyHandler()
		assert.GreaterOrEqual(t, run(t, g), delay)
	})
}

// TestSlowDrainDoesNotDelayOthers: Drains run concurrently; one that blocks is
// abandoned and named, the others are called before any Stop, and nothing
// of the Group runs after Run returned. (v1 called b's Drain, then Stop,
// then a's Drain after Run returned.)
func TestSlowDrainDoesNotDelayOthers(t *testing.T) {
	r := &rec{}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	a := readyComp{newComp(r, "a")}
	b := blockingDrainer{readyComp{newComp(r, "b")}, release}
	g, ev := testGroup(WithShutdownTimeout(time.Second))
	g.Add("a", a)
	g.Add("b", b)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	cancel()
	err := wait(t, done, generous, "Run")
	require.ErrorIs(t, err, ErrTimeout)
	assert.Contains(t, err.Error(), "drain b: Drain did not return")
	all := r.all()
	assert.Contains(t, all, "drain:a")
	for i, s := range all {
		if strings.HasPrefix(s, "stop:") {
			assert.NotContains(t, all[i:], "drain:a", "a drained before any Stop")
		}
	}
	for _, e := range ev.all() {
		assert.NotEmpty(t, e.Component+e.Kind.String())
		if e.Kind == EventAbandoned {
			assert.Equal(t, "b", e.Component)
		}
	}
}

// TestTinyBudget: a budget of 1ns with one worker: Run returns, and no
// error has an empty component name (v1 blamed a Drain of nobody).
func TestTinyBudget(t *testing.T) {
	for range 20 {
		g, _ := testGroup(WithShutdownTimeout(time.Nanosecond))
		g.Add("w", Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(t, g, ctx)
		closed(t, g.Ready(), generous, "ready")
		cancel()
		err := wait(t, done, generous, "Run")
		var ce *ComponentError
		if errors.As(err, &ce) {
			assert.Equal(t, "w", ce.Component)
			assert.NotContains(t, err.Error(), "drain")
		}
	}
}

// TestNestedAbandonNamesInnermost: parent{pool, child{worker, h1, h2}} with
// h1 and h2 hanging in Stop: the error names them inside the child, the
// worker is stopped before the pool, and nothing is stopped after Run
// returned.
func TestNestedAbandonNamesInnermost(t *testing.T) {
	r := &rec{}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h1, h2 := newComp(r, "h1"), newComp(r, "h2")
	h1.stopHang, h2.stopHang = release, release
	child := New(WithLogger(nil))
	child.Add("worker", readyComp{newComp(r, "worker")})
	child.Add("h1", readyComp{h1}, After("worker"))
	child.Add("h2", readyComp{h2}, After("worker"))
	parent, _ := testGroup(WithShutdownTimeout(time.Second))
	parent.Add("pool", readyComp{newComp(r, "pool")})
	parent.Add("child", child)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, parent, ctx)
	closed(t, parent.Ready(), generous, "ready")
	cancel()
	err := wait(t, done, generous, "Run")
	require.ErrorIs(t, err, ErrTimeout)
	assert.Contains(t, err.Error(), "stop child: stop h1: Stop did not return")
	assert.Contains(t, err.Error(), "stop child: stop h2: Stop did not return")
	stops := r.only("stop:")
	assert.Equal(t, "pool", stops[len(stops)-1], "the pool stops last: %v", stops)
	assert.Contains(t, stops, "worker")
	n := len(r.only("stop:"))
	// Give anything left over a chance to run: it must not.
	runtime.Gosched()
	assert.Len(t, r.only("stop:"), n, "no Stop after Run returned")
}

// TestHooksStartPanicAfterCancel: a start hook that panics once its context
// is cancelled is a failure (exit 1) reported at once, not a stop that
// waits for the budget.
func TestHooksStartPanicAfterCancel(t *testing.T) {
	started := make(chan struct{})
	g, _ := testGroup(WithShutdownTimeout(5 * time.Second))
	g.Add("a", readyComp{newComp(&rec{}, "a")})
	g.Add("h", Hooks(func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		panic("start hook gave up")
	}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, started, generous, "start hook running")
	began := time.Now()
	cancel()
	err := wait(t, done, generous, "Run")
	assert.Less(t, time.Since(began), 4*time.Second)
	assert.NotErrorIs(t, err, ErrTimeout)
}

// TestStartReturnsNilDuringDrain: a Start that returns nil after the
// shutdown began is what the shutdown asked for, not ErrExited.
func TestStartReturnsNilDuringDrain(t *testing.T) {
	g, _ := testGroup(WithDrainDelay(200 * time.Millisecond))
	g.Add("d", readyComp{newComp(&rec{}, "d")}) // a Drainer: the delay applies
	g.Add("w", Func(func(ctx context.Context) error {
		<-g.Ready()
		for g.Phase() != PhaseDraining {
			runtime.Gosched()
		}
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	cancel()
	assert.NoError(t, wait(t, done, generous, "Run"))
}

// TestContextDoneBeforeRunNoComponents: nothing runs, no drain delay.
func TestContextDoneBeforeRunNoComponents(t *testing.T) {
	g, ev := testGroup(WithDrainDelay(time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.NoError(t, g.Run(ctx))
	_, ran := ev.phase(PhaseRunning)
	assert.False(t, ran, "the Group never ran")
}

// blockingReady is a Readier whose Ready blocks.
type blockingReady struct {
	*comp
	release chan struct{}
}

func (b blockingReady) Ready() <-chan struct{} { <-b.release; return nil }

// TestStartTimeoutBoundsReady: a Ready that blocks is bounded by the start
// timeout, and the error names the component.
func TestStartTimeoutBoundsReady(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	g, _ := testGroup(WithStartTimeout(200 * time.Millisecond))
	g.Add("slow", blockingReady{newComp(&rec{}, "slow"), release})
	began := time.Now()
	err := g.Run(context.Background())
	assert.Less(t, time.Since(began), 5*time.Second)
	require.ErrorIs(t, err, ErrTimeout)
	assert.Contains(t, err.Error(), "not ready within the start timeout 200ms (not ready: slow)")
}

// TestNestedSeesParentCause: the components of a nested Group have their
// contexts cancelled with the parent's cause.
func TestNestedSeesParentCause(t *testing.T) {
	bye := errors.New("bye")
	var cause atomic.Value
	child := New(WithLogger(nil))
	child.Add("w", Func(func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	}))
	child.Add("h", Hooks(nil, func(ctx context.Context) error {
		cause.Store(ctx.Value(causeKey{}))
		return nil
	}))
	parent, _ := testGroup()
	parent.Add("child", child)
	done := runAsync(t, parent, context.Background())
	closed(t, parent.Ready(), generous, "ready")
	parent.Shutdown(bye)
	require.NoError(t, wait(t, done, generous, "Run"))
	assert.ErrorIs(t, child.Cause(), bye)
	assert.ErrorIs(t, cause.Load().(error), bye)
}

// TestVerboseHealth: /readyz?verbose lists each component in Kubernetes'
// format; the plain answer is unchanged.
func TestVerboseHealth(t *testing.T) {
	g, _ := testGroup()
	g.Add("db", readyComp{newComp(&rec{}, "db")})
	h := g.ReadyHandler()
	get := func(target string) (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
		return w.Code, w.Body.String()
	}
	code, body := get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "not ready: idle\n", body)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, g, ctx)
	closed(t, g.Ready(), generous, "ready")
	code, body = get("/readyz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok\n", body)
	code, body = get("/readyz?verbose")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "[+]lifecycle ok\n[+]db ok\nreadyz check passed\n", body)
	cancel()
	require.NoError(t, wait(t, done, generous, "Run"))
	code, body = get("/readyz?verbose")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "[-]lifecycle failed: stopped\n[-]db failed: stopped\nreadyz check failed\n", body)
}

// TestTimersHeap: the loop's timers come out in time order, whatever the
// order they went in.
func TestTimersHeap(t *testing.T) {
	var h timers
	base := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	var want []time.Time
	for range 500 {
		at := base.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
		h.push(timer{at: at})
		want = append(want, at)
	}
	slices.SortFunc(want, func(a, b time.Time) int { return a.Compare(b) })
	for i, w := range want {
		if got := h.pop().at; !got.Equal(w) {
			t.Fatalf("pop %d: %v, want %v", i, got.Sub(base), w.Sub(base))
		}
	}
	assert.Empty(t, h)
}
