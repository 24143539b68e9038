package lifecycle

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// rec records what the test components did, in the order they did it.
type rec struct {
	mu  sync.Mutex
	log []string
}

func (r *rec) add(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

// all returns the records so far.
func (r *rec) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// only returns the records that begin with prefix ("start:", "stop:", ...).
func (r *rec) only(prefix string) []string {
	var out []string
	for _, s := range r.all() {
		if len(s) > len(prefix) && s[:len(prefix)] == prefix {
			out = append(out, s[len(prefix):])
		}
	}
	return out
}

// comp is a configurable test component. Its zero behaviour: Start is ready
// at once and runs until Stop; Stop returns nil.
type comp struct {
	name string
	r    *rec

	gate       chan struct{} // if set, Start waits for it (or ctx) before it is ready
	startErr   error         // returned by Start before it is ready
	startPanic any           // panicked by Start before it is ready
	startNil   bool          // Start returns nil before it is ready
	runErr     chan error    // if set, Start returns what it receives while running
	runPanic   chan any      // if set, Start panics with what it receives while running
	ignoreStop bool          // Start does not return on Stop, only when its ctx is done
	hangStart  chan struct{} // if set, Start ignores Stop and ctx and returns when this closes
	stopErr    error         // returned by Stop
	stopPanic  any           // panicked by Stop
	stopHang   chan struct{} // if set, Stop ignores ctx and blocks until this closes
	onStop     func(*comp)   // if set, called first thing in Stop
	onStart    func(*comp)   // if set, called first thing in Start
	startDone  chan struct{} // closed when Start returns
	ready      chan struct{} // closed when ready
	stopped    chan struct{} // closed when Stop was called
	stopOnce   sync.Once
	mu         sync.Mutex
	startCtx   context.Context
	stopCtx    context.Context
	stopCtxErr error // ctx.Err() of Stop's ctx when Stop was called
	stopCalls  int
}

func newComp(r *rec, name string) *comp {
	return &comp{name: name, r: r, ready: make(chan struct{}), stopped: make(chan struct{}), startDone: make(chan struct{})}
}

func (c *comp) Start(ctx context.Context) error {
	defer close(c.startDone)
	c.mu.Lock()
	c.startCtx = ctx
	c.mu.Unlock()
	c.r.add("start:" + c.name)
	if c.onStart != nil {
		c.onStart(c)
	}
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.startPanic != nil {
		panic(c.startPanic)
	}
	if c.startErr != nil {
		return c.startErr
	}
	if c.startNil {
		return nil
	}
	close(c.ready)
	c.r.add("ready:" + c.name)
	if c.hangStart != nil {
		<-c.hangStart
		return nil
	}
	stopped := c.stopped
	if c.ignoreStop {
		stopped = nil
	}
	select {
	case <-stopped:
		return nil
	case err := <-c.runErr:
		return err
	case v := <-c.runPanic:
		panic(v)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *comp) Stop(ctx context.Context) error {
	c.mu.Lock()
	c.stopCalls++
	c.stopCtx = ctx
	c.stopCtxErr = ctx.Err()
	c.mu.Unlock()
	c.r.add("stop:" + c.name)
	if c.onStop != nil {
		c.onStop(c)
	}
	if c.stopPanic != nil {
		panic(c.stopPanic)
	}
	if c.stopHang != nil {
		<-c.stopHang
	}
	c.stopOnce.Do(func() { close(c.stopped) })
	return c.stopErr
}

func (c *comp) Drain() { c.r.add("drain:" + c.name) }

func (c *comp) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopCalls
}

func (c *comp) contexts() (start, stop context.Context, stopErr error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startCtx, c.stopCtx, c.stopCtxErr
}

// readyComp is a comp that implements Readier: the Group waits for it.
type readyComp struct{ *comp }

func (c readyComp) Ready() <-chan struct{} { return c.ready }

// events records a Group's events.
type events struct {
	mu  sync.Mutex
	evs []Event
	ch  chan Event // if set, every event is also sent here (non-blocking)
}

func (e *events) observe(ev Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	if e.ch != nil {
		select {
		case e.ch <- ev:
		default:
		}
	}
}

func (e *events) all() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.evs)
}

// first returns the first event of kind for component (any component if
// empty), and whether there is one.
func (e *events) first(kind EventKind, component string) (Event, bool) {
	for _, ev := range e.all() {
		if ev.Kind == kind && (component == "" || ev.Component == component) {
			return ev, true
		}
	}
	return Event{}, false
}

func (e *events) phase(p Phase) (Event, bool) {
	for _, ev := range e.all() {
		if ev.Kind == EventPhase && ev.Phase == p {
			return ev, true
		}
	}
	return Event{}, false
}

// testGroup returns a Group with test defaults (no signals, no logs, no
// drain delay, a 2 s budget) and opts after them, and the recorder of its
// events.
func testGroup(opts ...Option) (*Group, *events) {
	ev := &events{}
	base := []Option{WithSignals(), WithLogger(nil), WithDrainDelay(0), WithShutdownTimeout(2 * time.Second), WithObserver(ev.observe)}
	return New(append(base, opts...)...), ev
}

// runAsync runs g.Run(ctx) in a goroutine; the returned channel receives its
// error. The test fails if Run has not returned within limit.
func runAsync(t *testing.T, g *Group, ctx context.Context) <-chan error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- g.Run(ctx) }()
	return ch
}

// wait returns what ch receives, failing the test after limit.
func wait[T any](t *testing.T, ch <-chan T, limit time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(limit):
		t.Fatalf("%s: nothing after %v", what, limit)
		panic("unreachable")
	}
}

// closed waits until ch is closed, failing the test after limit.
func closed(t *testing.T, ch <-chan struct{}, limit time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(limit):
		t.Fatalf("%s: not after %v", what, limit)
	}
}

// generous is the limit for anything that should happen promptly: the
// machine is slow and shared, and tests run with -race.
const generous = 10 * time.Second
