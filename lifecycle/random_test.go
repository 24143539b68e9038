package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The randomized test: a generator builds a random set of components, a
// driver runs them in a Group and shuts it down in a random way, and a checker
// compares what the components and the events recorded with the contract.
// TestRandom runs many seeds; FuzzGroup runs the same generator on seeds the
// fuzzer derives from its input.

// rndKind is the behaviour of a generated component.
type rndKind int

const (
	rndFast       rndKind = iota // runs until Stop
	rndSlowReady                 // a Readier, ready after a short delay
	rndFailStart                 // a Readier whose Start fails (error or panic) before it is ready
	rndFailLater                 // Start returns an error while running
	rndPanicStart                // Start panics while running
	rndPanicStop                 // Stop panics
	rndHangStop                  // Stop ignores its ctx and blocks until the test releases it
	rndIgnoreCtx                 // Start ignores Stop and its ctx until the test releases it
	rndNilEarly                  // Start returns nil while running
	rndKinds
)

var rndKindNames = [...]string{"fast", "slowready", "failstart", "faillater", "panicstart", "panicstop", "hangstop", "ignorectx", "nilearly"}

func (k rndKind) String() string { return rndKindNames[k] }

// rndWeights makes the kinds that cost a whole shutdown budget (hangstop,
// ignorectx) rarer than the others.
var rndWeights = [rndKinds]int{rndFast: 6, rndSlowReady: 6, rndFailStart: 2, rndFailLater: 3, rndPanicStart: 2, rndPanicStop: 2, rndHangStop: 1, rndIgnoreCtx: 1, rndNilEarly: 2}

// firesWhile reports whether the kind fails while running (and so has a
// moment, rndWhen, at which it fails).
func (k rndKind) firesWhile() bool {
	return k == rndFailLater || k == rndPanicStart || k == rndNilEarly
}

// rndWhen says when a component that fails while running fails.
type rndWhen int

const (
	rndAtStart    rndWhen = iota // as soon as Start runs (a Readier: right after it closed its channel)
	rndAfterReady                // once the Group has reported it ready (EventReady)
	rndOnCommand                 // when the driver fires it, once the Group is running
)

// rndEnd is how the driver begins the shutdown if no component does.
type rndEnd int

const (
	rndCancel      rndEnd = iota // cancel Run's context once the Group is running
	rndCancelStart               // cancel Run's context when the k-th component is ready
	rndFire                      // fire some rndOnCommand components once the Group is running
)

// rndPlan is what the generator made: the Group's options, the components and
// how the driver ends the run.
type rndPlan struct {
	budget time.Duration // shutdown timeout
	drain  time.Duration
	comps  []*rndComp
	end    rndEnd
	at     int   // rndCancelStart: cancel when this many components are ready
	fire   []int // rndFire: the components fired, in this order
}

func (p *rndPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "budget=%v drain=%v end=%d at=%d fire=%v:", p.budget, p.drain, p.end, p.at, p.fire)
	for _, c := range p.comps {
		fmt.Fprintf(&b, " %s(%s r=%t d=%t w=%d delay=%v panic=%t)", c.name, c.kind, c.readier, c.drainer, c.when, c.delay, c.panics)
	}
	return b.String()
}

// rndGenerate builds a random plan.
func rndGenerate(r *rand.Rand) *rndPlan {
	p := &rndPlan{
		budget: 300 * time.Millisecond,
		drain:  time.Duration(r.IntN(4)) * 5 * time.Millisecond,
	}
	total := 0
	for _, w := range rndWeights {
		total += w
	}
	n := 1 + r.IntN(8)
	for i := range n {
		k := rndKind(0)
		for x := r.IntN(total); x >= rndWeights[k]; k++ {
			x -= rndWeights[k]
		}
		c := &rndComp{
			name:    fmt.Sprintf("c%d-%s", i, k),
			kind:    k,
			readier: r.IntN(2) == 0,
			drainer: r.IntN(3) == 0,
		}
		switch k {
		case rndSlowReady, rndFailStart:
			c.readier = true
			c.delay = time.Duration(r.IntN(3)) * time.Millisecond
			c.panics = k == rndFailStart && r.IntN(3) == 0
		}
		if k.firesWhile() {
			c.when = rndWhen(r.IntN(3))
		}
		p.comps = append(p.comps, c)
	}
	p.end = rndEnd(r.IntN(3))
	p.at = r.IntN(n + 1)
	for i, c := range p.comps {
		if c.kind.firesWhile() && c.when == rndOnCommand && r.IntN(2) == 0 {
			p.fire = append(p.fire, i)
		}
	}
	r.Shuffle(len(p.fire), func(i, j int) { p.fire[i], p.fire[j] = p.fire[j], p.fire[i] })
	return p
}

// rndComp is a generated component. Its wrappers (rndPlain, rndReady,
// rndDrain, rndBoth) give it the optional interfaces the plan chose.
type rndComp struct {
	name    string
	kind    rndKind
	readier bool
	drainer bool
	when    rndWhen
	delay   time.Duration // rndSlowReady, rndFailStart: how long Start takes before it is ready or fails
	panics  bool          // rndFailStart: panic rather than return an error

	err      error  // the injected error
	panicVal string // the injected panic value

	seq       *atomic.Int64 // shared by the run: orders the calls and the events
	ready     chan struct{}
	quit      chan struct{} // closed by Stop
	quitOnce  sync.Once
	fire      chan struct{} // closed by the driver or the observer: fail now
	fireOnce  sync.Once
	release   chan struct{} // closed by the test at cleanup: hanging calls return
	startDone chan struct{} // closed when Start returns
	stopDone  chan struct{} // closed when Stop returns

	startCalls, stopCalls, drainCalls atomic.Int32
	startSeq, stopSeq, drainSeq       atomic.Int64
	ignoring                          atomic.Bool // an ignorectx Start passed its check for an early Stop
	fired                             atomic.Bool // the failure was injected: Start or Stop returned err, panicked, or returned nil early
}

type (
	rndPlain struct{ *rndComp }
	rndReady struct{ *rndComp }
	rndDrain struct{ *rndComp }
	rndBoth  struct{ *rndComp }
)

func (c rndReady) Ready() <-chan struct{} { return c.ready }
func (c rndBoth) Ready() <-chan struct{}  { return c.ready }
func (c rndDrain) Drain()                 { c.drained() }
func (c rndBoth) Drain()                  { c.drained() }

// component returns c with the optional interfaces of its plan.
func (c *rndComp) component() Component {
	switch {
	case c.readier && c.drainer:
		return rndBoth{c}
	case c.readier:
		return rndReady{c}
	case c.drainer:
		return rndDrain{c}
	}
	return rndPlain{c}
}

func (c *rndComp) init(seq *atomic.Int64, release chan struct{}) {
	c.err = errors.New("injected failure of " + c.name)
	c.panicVal = "injected panic of " + c.name
	c.seq = seq
	c.release = release
	c.ready = make(chan struct{})
	c.quit = make(chan struct{})
	c.fire = make(chan struct{})
	c.startDone = make(chan struct{})
	c.stopDone = make(chan struct{})
}

func (c *rndComp) drained() {
	c.drainCalls.Add(1)
	c.drainSeq.Store(c.seq.Add(1))
}

func (c *rndComp) fireNow() { c.fireOnce.Do(func() { close(c.fire) }) }

// pause waits d, or until Stop; it reports whether Stop came first.
func (c *rndComp) pause(d time.Duration) (stopped bool) {
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case <-c.quit:
		return true
	}
}

func (c *rndComp) Start(ctx context.Context) error {
	if c.startCalls.Add(1) > 1 {
		return errors.New("Start called twice")
	}
	c.startSeq.Store(c.seq.Add(1))
	defer close(c.startDone)
	select {
	case <-c.quit:
		return nil // stopped before it started
	default:
	}
	if c.pause(c.delay) {
		return nil
	}
	if c.kind == rndFailStart {
		c.fired.Store(true)
		if c.panics {
			panic(c.panicVal)
		}
		return c.err
	}
	if c.readier {
		close(c.ready)
	}
	switch {
	case c.kind.firesWhile():
		if c.when != rndAtStart {
			select {
			case <-c.fire:
			case <-c.quit:
				return nil
			case <-ctx.Done():
				return nil
			}
		}
		c.fired.Store(true)
		switch c.kind {
		case rndFailLater:
			return c.err
		case rndPanicStart:
			panic(c.panicVal)
		}
		return nil // rndNilEarly
	case c.kind == rndIgnoreCtx:
		c.ignoring.Store(true)
		<-c.quit
		<-c.release
		return nil
	}
	select {
	case <-c.quit:
	case <-ctx.Done():
	}
	return nil
}

func (c *rndComp) Stop(ctx context.Context) error {
	if c.stopCalls.Add(1) > 1 {
		return errors.New("Stop called twice")
	}
	c.stopSeq.Store(c.seq.Add(1))
	defer close(c.stopDone)
	c.quitOnce.Do(func() { close(c.quit) })
	switch c.kind {
	case rndPanicStop:
		c.fired.Store(true)
		panic(c.panicVal)
	case rndHangStop:
		<-c.release
		return nil
	case rndIgnoreCtx:
		return nil // Start does not return: the Group must abandon it
	}
	select {
	case <-c.startDone:
	case <-ctx.Done():
	}
	return nil
}

// rndEvent is an event with its place in the run's sequence.
type rndEvent struct {
	Event
	seq int64
}

// rndResult is what a run recorded.
type rndResult struct {
	err        error
	phase      Phase // g.Phase() after Run
	cause      error // g.Cause() after Run
	began, end time.Time
	events     []rndEvent
	// startDoneAtEnd[i]: component i's Start had returned when Run returned.
	startDoneAtEnd []bool
}

// rndRun runs the plan in a Group and returns what happened. It waits for
// every call the components are still in (released at the end) to return,
// so that no goroutine is left.
func rndRun(t testing.TB, p *rndPlan) *rndResult {
	var (
		seq     atomic.Int64
		release = make(chan struct{})
		mu      sync.Mutex
		res     = &rndResult{}
		ready   int
		byName  = map[string]*rndComp{}
		exited  = map[string]chan struct{}{}
		running = make(chan struct{})
		shut    = make(chan struct{})
		shutOne sync.Once
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range p.comps {
		c.init(&seq, release)
		byName[c.name] = c
		exited[c.name] = make(chan struct{})
	}
	observe := func(ev Event) {
		mu.Lock()
		res.events = append(res.events, rndEvent{ev, seq.Add(1)})
		mu.Unlock()
		switch ev.Kind {
		case EventPhase:
			if ev.Phase == PhaseRunning {
				close(running)
			}
		case EventShutdown:
			shutOne.Do(func() { close(shut) }) // a second one is an error for rndCheck
		case EventReady:
			mu.Lock()
			ready++
			n := ready
			mu.Unlock()
			if c := byName[ev.Component]; c.kind.firesWhile() && c.when == rndAfterReady {
				c.fireNow()
			}
			if p.end == rndCancelStart && n == p.at {
				cancel()
			}
		case EventExited:
			close(exited[ev.Component])
		}
	}
	g := New(WithSignals(), WithLogger(nil), WithShutdownTimeout(p.budget), WithDrainDelay(p.drain),
		WithStartTimeout(time.Minute), WithObserver(observe))
	for _, c := range p.comps {
		g.Add(c.name, c.component())
	}
	if p.end == rndCancelStart && p.at == 0 {
		cancel()
	}
	errc := make(chan error, 1)
	res.began = time.Now()
	go func() { errc <- g.Run(ctx) }()

	// Drive: once the Group is running, fire the chosen components or cancel.
	select {
	case <-running:
		if p.end == rndFire && len(p.fire) > 0 {
			for _, i := range p.fire {
				p.comps[i].fireNow()
			}
		} else {
			cancel()
		}
	case <-shut:
	}

	failsafe := time.NewTimer(time.Minute)
	defer failsafe.Stop()
	select {
	case res.err = <-errc:
	case <-failsafe.C:
		close(release)
		t.Fatalf("Run did not return within a minute\nplan: %v", p)
	}
	res.end = time.Now()
	for _, c := range p.comps {
		res.startDoneAtEnd = append(res.startDoneAtEnd, rndIsClosed(c.startDone))
	}
	res.phase, res.cause = g.Phase(), g.Cause()

	// Cleanup: release the hanging calls and wait until every call the Group
	// made has returned (the Start goroutines report EventExited).
	close(release)
	for _, c := range p.comps {
		if c.startCalls.Load() == 0 && !rndHas(res.snapshot(&mu), EventStarting, c.name) {
			continue
		}
		select {
		case <-exited[c.name]:
		case <-failsafe.C:
			t.Fatalf("%s: Start did not return after release\nplan: %v", c.name, p)
		}
		if c.stopCalls.Load() > 0 || rndHas(res.snapshot(&mu), EventStopping, c.name) {
			select {
			case <-c.stopDone:
			case <-failsafe.C:
				t.Fatalf("%s: Stop did not return after release\nplan: %v", c.name, p)
			}
		}
	}
	res.events = res.snapshot(&mu)
	return res
}

func (r *rndResult) snapshot(mu *sync.Mutex) []rndEvent {
	mu.Lock()
	defer mu.Unlock()
	return append([]rndEvent(nil), r.events...)
}

func rndIsClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func rndHas(evs []rndEvent, k EventKind, name string) bool {
	return rndFind(evs, k, name) != nil
}

func rndFind(evs []rndEvent, k EventKind, name string) *rndEvent {
	for i := range evs {
		if evs[i].Kind == k && evs[i].Component == name {
			return &evs[i]
		}
	}
	return nil
}

// rndLeaves flattens an error tree made by errors.Join and wrapping into its
// *ComponentError nodes and its other leaves.
func rndLeaves(err error) (comps []*ComponentError, others []error) {
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if ce, ok := err.(*ComponentError); ok {
			comps = append(comps, ce)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		default:
			others = append(others, err)
		}
	}
	walk(err)
	return comps, others
}

// rndSlack is how much later than the deadline plus stopGrace Run may return:
// generous, for a slow shared machine under -race with runs in parallel.
const rndSlack = 2 * time.Second

// rndCheck checks the invariants of the contract on what the run recorded.
func rndCheck(t testing.TB, p *rndPlan, res *rndResult) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
	}
	defer func() {
		if t.Failed() {
			t.Logf("plan: %v\nRun took %v; err: %v", p, res.end.Sub(res.began), res.err)
			for _, ev := range res.events {
				t.Logf("  %3d %-9s %-8s %-18s %v", ev.seq, ev.Kind, ev.Phase, ev.Component, ev.Err)
			}
		}
	}()
	evs := res.events
	index := map[string]int{}
	for i, c := range p.comps {
		index[c.name] = i
	}

	// Phases: in order, ending stopped; exactly one shutdown.
	var shutdown *rndEvent
	last := PhaseIdle
	running := false
	for i := range evs {
		ev := &evs[i]
		switch ev.Kind {
		case EventPhase:
			if ev.Phase <= last {
				fail("phase %v after %v", ev.Phase, last)
			}
			last = ev.Phase
			running = running || ev.Phase == PhaseRunning
		case EventShutdown:
			if shutdown != nil {
				fail("second EventShutdown: %v", ev.Err)
			}
			shutdown = ev
		case EventForced:
			fail("EventForced without signals")
		}
	}
	if last != PhaseStopped || res.phase != PhaseStopped {
		fail("last phase event %v, Phase() %v; want stopped", last, res.phase)
	}
	if shutdown == nil {
		t.Fatalf("no EventShutdown")
	}
	if res.cause == nil || res.cause != shutdown.Err {
		fail("Cause() = %v, EventShutdown.Err = %v; want the same, not nil", res.cause, shutdown.Err)
	}

	// Start order: the launched components are a prefix of the list, in order.
	launched := 0
	for _, ev := range evs {
		if ev.Kind != EventStarting {
			continue
		}
		if index[ev.Component] != launched {
			fail("EventStarting %s at position %d", ev.Component, launched)
		}
		launched++
	}

	// Stop order: the reverse of start order.
	prev := len(p.comps)
	for _, ev := range evs {
		if ev.Kind != EventStopping {
			continue
		}
		if i := index[ev.Component]; i >= prev {
			fail("EventStopping %s after %s: not the reverse of start order", ev.Component, p.comps[prev].name)
		} else {
			prev = i
		}
	}

	abandoned := false
	for i, c := range p.comps {
		starts, stops, drains := c.startCalls.Load(), c.stopCalls.Load(), c.drainCalls.Load()
		stopping := rndHas(evs, EventStopping, c.name)
		readyEv := rndHas(evs, EventReady, c.name)
		if rndHas(evs, EventAbandoned, c.name) {
			abandoned = true
		}
		if i >= launched {
			if starts+stops+drains != 0 {
				fail("%s never launched, but Start×%d Stop×%d Drain×%d", c.name, starts, stops, drains)
			}
			continue
		}
		if starts != 1 {
			fail("%s launched, Start called %d times; want 1", c.name, starts)
		}
		if stops > 1 || drains > 1 {
			fail("%s: Stop×%d Drain×%d; want at most 1 each", c.name, stops, drains)
		}
		if (stops == 1) != stopping {
			fail("%s: Stop called %d times, EventStopping %t", c.name, stops, stopping)
		}
		if readyEv && stops != 1 {
			fail("%s was ready, Stop called %d times; want 1", c.name, stops)
		}
		if c.kind != rndFailStart && stops != 1 {
			fail("%s (%s) started, Stop called %d times; want 1", c.name, c.kind, stops)
		}
		if c.kind == rndFailStart {
			if readyEv {
				fail("%s failed before ready, yet EventReady", c.name)
			}
			var ce *ComponentError
			if errors.As(res.cause, &ce) && ce.Component == c.name && stops != 0 {
				fail("%s: its start failure began the shutdown, yet it was stopped", c.name)
			}
		}
		if stops == 0 && !res.startDoneAtEnd[i] {
			fail("%s: not stopped, and its Start had not returned when Run returned", c.name)
		}
		// Drain: once per started drainer if the Group was running, before Stop.
		switch {
		case !running || !c.drainer:
			if drains != 0 {
				fail("%s: Drain called (running %t, drainer %t)", c.name, running, c.drainer)
			}
		case drains != 1:
			fail("%s: Drain called %d times after running; want 1", c.name, drains)
		case c.drainSeq.Load() > c.stopSeq.Load():
			fail("%s: Drain after Stop", c.name)
		}
		// Abandonment: the hanging kinds are abandoned when stopped; the others
		// only once the deadline has passed.
		ab := rndFind(evs, EventAbandoned, c.name)
		// (A Group does not wait for a component that is not a Readier to
		// run: its Stop may come first, and then its Start returns at once.)
		hangs := c.kind == rndHangStop || (c.kind == rndIgnoreCtx && c.ignoring.Load())
		if hangs && stops == 1 && ab == nil {
			fail("%s (%s) stopped but not abandoned", c.name, c.kind)
		}
		if ab != nil {
			if early := shutdown.Time.Add(p.budget).Sub(ab.Time); early > 0 {
				fail("%s abandoned %v before the deadline", c.name, early)
			}
		}
	}

	// Duration: the shutdown ends by its deadline plus stopGrace (and slack).
	if took, limit := res.end.Sub(shutdown.Time), p.budget+rndSlack; took > limit {
		fail("Run returned %v after the shutdown began; want ≤ %v", took, limit)
	}

	// Errors: every failure is there, named; nothing else is.
	comps, others := rndLeaves(res.err)
	if len(others) > 0 {
		fail("errors that are not *ComponentError: %v", others)
	}
	explained := func(ce *ComponentError) bool {
		i, ok := index[ce.Component]
		if !ok || i >= launched {
			return false
		}
		c := p.comps[i]
		var pe *PanicError
		switch {
		case errors.As(ce, &pe):
			return (c.kind == rndPanicStart || c.kind == rndPanicStop || c.kind == rndFailStart && c.panics) &&
				c.fired.Load() && pe.Value == c.panicVal && len(pe.Stack) > 0 &&
				(c.kind != rndPanicStop || ce.Phase == PhaseStopping)
		case errors.Is(ce, c.err):
			return c.fired.Load()
		case errors.Is(ce, ErrTimeout):
			return ce.Phase == PhaseStopping && rndHas(evs, EventAbandoned, c.name)
		case errors.Is(ce, ErrExited):
			return c.kind == rndNilEarly && c.fired.Load()
		}
		return false
	}
	seen := map[string]int{}
	for _, ce := range comps {
		if !explained(ce) {
			fail("unexplained error: %v", ce)
		}
		// A Stop that fails after the deadline is tagged with ErrTimeout, and
		// its Start may then be abandoned too: two errors, not one twice.
		what := "abandon"
		var pe *PanicError
		switch i, ok := index[ce.Component]; {
		case ok && (errors.As(ce, &pe) || errors.Is(ce, p.comps[i].err)):
			what = "failure"
		case errors.Is(ce, ErrExited):
			what = "exit"
		}
		if seen[ce.Component+" "+what]++; seen[ce.Component+" "+what] == 2 {
			fail("%s: %s reported more than once", ce.Component, what)
		}
	}
	reported := func(c *rndComp) bool {
		for _, ce := range comps {
			if ce.Component != c.name {
				continue
			}
			var pe *PanicError
			if errors.Is(ce, c.err) || errors.As(ce, &pe) && pe.Value == c.panicVal {
				return true
			}
			if c.kind == rndNilEarly && errors.Is(ce, ErrExited) {
				return true
			}
		}
		return false
	}
	for _, c := range p.comps {
		if !c.fired.Load() || rndHas(evs, EventAbandoned, c.name) {
			continue
		}
		if c.kind == rndNilEarly {
			// A nil return is a failure only while the Group runs; when the
			// shutdown had begun for another reason it may count as a stop.
			var ce *ComponentError
			if errors.As(res.cause, &ce) && ce.Component == c.name && !reported(c) {
				fail("%s returned nil early, began the shutdown, but is not in the error", c.name)
			}
			continue
		}
		if !reported(c) {
			fail("%s (%s) failed, but the error does not say so", c.name, c.kind)
		}
		var ce *ComponentError
		if !errors.As(res.err, &ce) {
			fail("errors.As(err, *ComponentError) is false")
		}
	}

	// Exit code.
	// A Stop that fails after the deadline has its error tagged with
	// ErrTimeout too; only the deadline passing explains ErrTimeout.
	code := ExitCode(res.err)
	timedOut := errors.Is(res.err, ErrTimeout)
	if timedOut && res.end.Before(shutdown.Time.Add(p.budget)) {
		fail("ErrTimeout, but Run returned before the deadline")
	}
	switch {
	case abandoned && !timedOut:
		fail("something was abandoned, but errors.Is(err, ErrTimeout) is false")
	case timedOut:
		if code != ExitTimeout {
			fail("ExitCode = %d; want %d", code, ExitTimeout)
		}
	case len(comps) > 0:
		if code != ExitFailure {
			fail("ExitCode = %d; want %d", code, ExitFailure)
		}
	default:
		if res.err != nil || code != ExitOK {
			fail("err = %v, ExitCode = %d; want nil, %d", res.err, code, ExitOK)
		}
	}
	if errors.Is(res.err, ErrForced) {
		fail("ErrForced without signals")
	}
}

// rndSeeds is how many seeds TestRandom runs, and how many at once: most
// runs wait on timers, so they overlap well even on two cores.
const (
	rndSeeds      = 500
	rndSeedsShort = 50
	rndParallel   = 8
)

func TestRandom(t *testing.T) {
	n := rndSeeds
	if testing.Short() {
		n = rndSeedsShort
	}
	sem := make(chan struct{}, rndParallel)
	var wg sync.WaitGroup
	for seed := range uint64(n) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				p := rndGenerate(rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)))
				rndCheck(t, p, rndRun(t, p))
			})
		})
	}
	wg.Wait()
}

// FuzzGroup runs the generator of TestRandom on a seed made from the input.
// Run it with go test -fuzz=FuzzGroup ./lifecycle.
func FuzzGroup(f *testing.F) {
	for _, s := range []string{"", "0", "1", "hang", "panic", "fail at start", "\x00\x01\x02\x03", "graceful"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h := fnv.New128a()
		h.Write(data)
		sum := h.Sum(nil)
		var s1, s2 uint64
		for i := range 8 {
			s1 = s1<<8 | uint64(sum[i])
			s2 = s2<<8 | uint64(sum[8+i])
		}
		p := rndGenerate(rand.New(rand.NewPCG(s1, s2)))
		rndCheck(t, p, rndRun(t, p))
	})
}

// rndStuckStop is a component whose Stop ignores its ctx until release closes.
type rndStuckStop struct{ quit, release chan struct{} }

func (c *rndStuckStop) Start(context.Context) error { <-c.quit; return nil }
func (c *rndStuckStop) Stop(context.Context) error  { close(c.quit); <-c.release; return nil }

// TestRandomStopBoundedInRun: Stop on a Group run by Run begins the shutdown
// "as a cancelled context would", so the shutdown budget bounds it whatever
// Stop's ctx is. (The engine once used Stop's ctx as the stop context: with
// context.Background() a Stop that hung held Run forever.)
func TestRandomStopBoundedInRun(t *testing.T) {
	const budget = 300 * time.Millisecond
	c := &rndStuckStop{quit: make(chan struct{}), release: make(chan struct{})}
	g := New(WithSignals(), WithLogger(nil), WithShutdownTimeout(budget), WithDrainDelay(0))
	g.Add("hang", c)
	errc := make(chan error, 1)
	go func() { errc <- g.Run(context.Background()) }()
	<-g.Ready()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = g.Stop(context.Background())
	}()
	limit := budget + rndSlack
	select {
	case err := <-errc:
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("Run: %v; want the hanging Stop named, with ErrTimeout", err)
		}
	case <-time.After(limit):
		t.Errorf("Run did not return within %v of Stop(context.Background()), shutdown timeout %v", limit, budget)
		close(c.release)
		<-errc
		<-stopped
		return
	}
	close(c.release)
	<-stopped
}

// rndReadyThenFail is a Readier whose Start closes its channel and at once
// returns an error: it was ready, so it started.
type rndReadyThenFail struct {
	ready chan struct{}
	stops atomic.Int32
}

func (c *rndReadyThenFail) Ready() <-chan struct{} { return c.ready }
func (c *rndReadyThenFail) Start(context.Context) error {
	close(c.ready)
	return errors.New("failed after ready")
}
func (c *rndReadyThenFail) Stop(context.Context) error { c.stops.Add(1); return nil }

// TestRandomReadyThenFail: a component that closed its Ready channel is
// started and must be stopped once, even if its Start returned before the
// start loop saw the channel closed (which happens nearly every time here:
// the Start goroutine runs on until it returns); and its failure is reported
// once. (The engine once did not stop it, then reported it twice.)
func TestRandomReadyThenFail(t *testing.T) {
	c := &rndReadyThenFail{ready: make(chan struct{})}
	g := New(WithSignals(), WithLogger(nil))
	g.Add("c", c)
	err := g.Run(context.Background())
	if err == nil {
		t.Errorf("Run: nil; want the failure")
	}
	if n := c.stops.Load(); n != 1 {
		t.Errorf("Stop called %d times; want 1 (the component was ready). Run: %v", n, err)
	}
	if comps, others := rndLeaves(err); len(comps) != 1 || len(others) != 0 {
		t.Errorf("Run: %q; want the failure reported once", err)
	}
}
