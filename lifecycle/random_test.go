package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The randomized test: a generator builds a random Group (a random
// dependency graph, random faults in every method a component has), a
// driver runs it and shuts it down in a random way, and a checker compares
// what the events, the components and Run's error recorded with the
// contract. TestRandom runs many seeds; FuzzGroup runs the same generator on
// seeds the fuzzer derives from its input.
//
// The events are the truth about order: they are emitted one at a time from
// the Group's own goroutine, in causal order, and the observer numbers them
// from the same counter the components number their calls with.
//
// The rules checked on every schedule (rndCheck, one method per rule):
//  1. a component starts only after everything it needs is ready, at once
//     (only other starts come between), and never after the shutdown began;
//  2. it stops only after everything that needs it has settled (stopped,
//     abandoned, or failed before it was ready), and then at once;
//  3. Start at most once; Stop exactly once if Start was called and did not
//     fail before the component was ready, never otherwise;
//  4. Run returns within the budget counted from EventShutdown (+ rndSlack);
//  5. each stop's deadline follows the documented budget rule (the deadline
//     less the component's reserve, or its StopTimeout), its Stop context
//     ends a fifth of its time (at most 200 ms) before it and is live when
//     the component has time, it is abandoned at that deadline and only if
//     something of it hangs;
//  6. Run's error holds every injected failure once, named, and nothing
//     else; ErrTimeout iff something was abandoned, the start timed out or a
//     Stop failed after its time ran out; the exit code matches;
//  7. every call of a component that was not abandoned has returned when Run
//     returns, no event comes after, and no goroutine of the run is left
//     once the hanging calls are released;
//  8. every Drainer that was running when the drain began gets Drain once,
//     after readiness turned off and before its Stop;
//  9. readiness turns off before the first Stop, and the drain delay is
//     waited only where there is something to drain.

// rndStart is what a component's Start does.
type rndStart int

const (
	sfNone       rndStart = iota // ready, then runs until Stop (or its ctx)
	sfFailBefore                 // (Readier) returns an error before it is ready
	sfPanicBefore
	sfNilBefore  // returns nil before it is ready
	sfHangBefore // never ready; ignores Stop and ctx until the test releases it
	sfFail       // ready, then returns an error (see rndWhen)
	sfPanic
	sfNil  // ready, then returns nil: it exits early
	sfHang // ready, then ignores Stop and ctx until the test releases it
	sfKinds
)

var sfNames = [...]string{"", "failbefore", "panicbefore", "nilbefore", "hangbefore", "fail", "panic", "nil", "hang"}

func (s rndStart) before() bool { return s >= sfFailBefore && s <= sfHangBefore }
func (s rndStart) fires() bool  { return s == sfFail || s == sfPanic || s == sfNil }

// rndReady is what a Readier's Ready does.
type rndReady int

const (
	rfNone  rndReady = iota // returns the channel Start closes once ready
	rfPanic                 // panics (Start is then never called)
	rfHang                  // blocks until the test releases it
	rfNil                   // returns nil: ready at once
	rfNever                 // returns a channel nothing closes; Start runs until Stop
	rfKinds
)

var rfNames = [...]string{"", "readypanic", "readyhang", "readynil", "readynever"}

// rndDrain is what a Drainer's Drain does.
type rndDrain int

const (
	dfNone  rndDrain = iota // returns at once
	dfPanic                 // panics
	dfHang                  // blocks until the test releases it
	dfKinds
)

var dfNames = [...]string{"", "drainpanic", "drainhang"}

// rndStop is what a component's Stop does.
type rndStop int

const (
	stNone  rndStop = iota // makes Start return, and waits for it or its ctx
	stFail                 // makes Start return, and returns an error at once
	stPanic                // makes Start return, and panics
	stHang                 // makes Start return, then ignores its ctx until the test releases it
	stSlow                 // makes Start return, then waits until its ctx is done and returns ctx.Err()
	stKinds
)

var stNames = [...]string{"", "stopfail", "stoppanic", "stophang", "stopslow"}

// Weights: the faults that cost a whole budget (the hangs, a slow Stop) are
// rarer than the others, so that a run takes a few hundred milliseconds.
var (
	sfWeights = [sfKinds]int{sfNone: 16, sfFailBefore: 2, sfPanicBefore: 1, sfNilBefore: 1, sfHangBefore: 1, sfFail: 3, sfPanic: 1, sfNil: 2, sfHang: 1}
	rfWeights = [rfKinds]int{rfNone: 14, rfPanic: 1, rfHang: 1, rfNil: 1, rfNever: 1}
	dfWeights = [dfKinds]int{dfNone: 8, dfPanic: 1, dfHang: 1}
	stWeights = [stKinds]int{stNone: 14, stFail: 2, stPanic: 1, stHang: 1, stSlow: 1}
)

func rndPick(r *rand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := r.IntN(total)
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	panic("unreachable")
}

// rndWhen says when a Start that fails after it is ready fails.
type rndWhen int

const (
	rndAtStart    rndWhen = iota // as soon as it is ready
	rndAfterReady                // once the Group has reported it ready (EventReady)
	rndOnCommand                 // when the driver fires it, once the Group is running
	rndAtDrain                   // when the drain begins (EventPhase draining): before its Stop
	rndWhens

	// For a failure before ready: rndAtStart is after its delay, and
	rndAtShutdown = rndWhens // when the shutdown begins (EventShutdown): as the Group turns to stop it
)

// rndEnd is how the driver begins the shutdown if no component does.
type rndEnd int

const (
	rndCancel     rndEnd = iota // cancel Run's context once the Group is running
	rndCancelAt                 // cancel Run's context when the at-th component is ready (0: before Run)
	rndFire                     // fire the rndOnCommand components of fire once the Group is running
	rndShutdown                 // call Shutdown(errRndShutdown) once the Group is running
	rndShutdownAt               // call Shutdown(errRndShutdown) from the observer when the at-th component is ready (0: before Run)
	rndStopCall                 // call Stop(context.Background()) once the Group is running
	rndEnds
)

var rndEndNames = [...]string{"cancel", "cancelat", "fire", "shutdown", "shutdownat", "stop"}

// errRndShutdown is the cause the driver gives Shutdown.
var errRndShutdown = errors.New("rnd: shutdown requested by the driver")

// Times. The budget is large enough that a component given a tenth of it
// (the reserve of one that has no StopTimeout) has much more than rndSched.
const (
	// rndSched is the scheduling latency the checker allows: a component
	// whose time to stop was at least this long must get a live Stop
	// context and must not be abandoned unless it hangs.
	rndSched = 80 * time.Millisecond
	// rndSlack is how much later than a deadline a deadline's consequence
	// (Run returning, a component abandoned) may be seen: two shared cores,
	// -race, several runs at once.
	rndSlack = 250 * time.Millisecond
	// rndFailsafe bounds every wait of the test: far more than any run
	// takes (budget, start timeout and slack), so that a Group that never
	// ends fails the test rather than hanging it.
	rndFailsafe = 10 * time.Second
	// rndSlop covers the clock readings of one moment taken a few
	// instructions apart (a deadline computed just before the event's time).
	rndSlop = time.Millisecond
)

// rndPlan is what the generator made: the Group's options, the components
// with their dependencies and faults, and how the driver ends the run.
type rndPlan struct {
	budget       time.Duration // shutdown timeout
	drain        time.Duration // drain delay
	startTimeout time.Duration
	comps        []*rndComp
	end          rndEnd
	at           int   // rndCancelAt, rndShutdownAt: when this many components are ready
	fire         []int // rndFire: the components fired, in this order
}

func (p *rndPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "budget=%v drain=%v start=%v end=%s at=%d fire=%v:", p.budget, p.drain, p.startTimeout, rndEndNames[p.end], p.at, p.fire)
	for i, c := range p.comps {
		fmt.Fprintf(&b, "\n  c%d", i)
		switch c.deps {
		case depChain:
			b.WriteString(" (chain)")
		case depNone:
			b.WriteString(" After()")
		case depNamed:
			fmt.Fprintf(&b, " After%v", c.afterIdx)
		}
		fmt.Fprintf(&b, " needs=%v", c.needs)
		if c.readier {
			b.WriteString(" readier")
		}
		if c.drainer {
			b.WriteString(" drainer")
		}
		if c.stopTimeout > 0 {
			fmt.Fprintf(&b, " StopTimeout(%v)", c.stopTimeout)
		}
		if c.start != sfNone {
			fmt.Fprintf(&b, " %s", sfNames[c.start])
			if c.start.fires() || c.start.before() && c.when == rndAtShutdown {
				fmt.Fprintf(&b, "/when=%d", c.when)
			}
		}
		if c.delay > 0 {
			fmt.Fprintf(&b, " delay=%v", c.delay)
		}
		for _, s := range []string{rfNames[c.readyF], dfNames[c.drainF], stNames[c.stopF]} {
			if s != "" {
				b.WriteString(" " + s)
			}
		}
	}
	return b.String()
}

// The ways a component declares its dependencies.
const (
	depChain = iota // no After: needs the one added before it
	depNone         // After(): needs nothing
	depNamed        // After(names...) of components added before it
)

// rndGenerate builds a random plan.
func rndGenerate(r *rand.Rand) *rndPlan {
	p := &rndPlan{
		budget:       []time.Duration{500 * time.Millisecond, 800 * time.Millisecond}[r.IntN(2)],
		drain:        time.Duration(r.IntN(4)) * 5 * time.Millisecond,
		startTimeout: time.Minute,
	}
	// How often components fail while the Group starts: often, rarely, or
	// never (then the Group reaches running, and the faults are those of
	// the shutdown: Drain, Stop, and the failures the driver fires).
	density := r.IntN(3)
	n := 1 + r.IntN(8)
	for i := range n {
		c := &rndComp{
			readier: r.IntN(2) == 0,
			drainer: r.IntN(3) == 0,
		}
		switch d := r.IntN(4); {
		case d <= 1:
			c.deps = depChain
			if i > 0 {
				c.needs = []int{i - 1}
			}
		case d == 2 || i == 0:
			c.deps = depNone
		default:
			c.deps = depNamed
			for range 1 + r.IntN(min(3, i)) {
				j := r.IntN(i)
				c.afterIdx = append(c.afterIdx, j) // a name given twice counts once
				if !rndContains(c.needs, j) {
					c.needs = append(c.needs, j)
				}
			}
		}
		if r.IntN(4) == 0 {
			// A stop timeout of its own, inside the budget.
			c.stopTimeout = p.budget/10 + time.Duration(r.IntN(5))*p.budget/10
		}
		sw, rw := sfWeights, rfWeights
		sw[sfNone] *= 1 + 3*(density%2) // 2: as is; 1: rarer
		rw[rfNone] *= 1 + 3*(density%2)
		for {
			c.start = rndStart(rndPick(r, sw[:]))
			if c.readier || !c.start.before() {
				break // a component that is not a Readier is ready once Start runs
			}
		}
		if c.start.fires() {
			c.when = rndWhen(r.IntN(int(rndWhens)))
		}
		if c.start.before() && c.start != sfHangBefore && r.IntN(2) == 0 {
			c.when = rndAtShutdown
		}
		if c.readier {
			c.delay = time.Duration(r.IntN(3)) * time.Millisecond
			c.readyF = rndReady(rndPick(r, rw[:]))
		}
		if density == 0 {
			c.readyF = rfNone
			if c.start != sfNone && (!c.start.fires() || c.when != rndOnCommand) {
				c.start = sfNone
			}
		}
		if c.drainer {
			c.drainF = rndDrain(rndPick(r, dfWeights[:]))
		}
		c.stopF = rndStop(rndPick(r, stWeights[:]))
		if c.start == sfHangBefore || c.readyF == rfHang || c.readyF == rfNever || c.start.before() && c.when == rndAtShutdown {
			// Never ready: the start timeout ends the start.
			p.startTimeout = time.Duration(150+50*r.IntN(3)) * time.Millisecond
		}
		p.comps = append(p.comps, c)
	}
	p.end = rndEnd(r.IntN(int(rndEnds)))
	p.at = r.IntN(n + 1)
	for i, c := range p.comps {
		if c.start.fires() && c.when == rndOnCommand && r.IntN(2) == 0 {
			p.fire = append(p.fire, i)
		}
	}
	r.Shuffle(len(p.fire), func(i, j int) { p.fire[i], p.fire[j] = p.fire[j], p.fire[i] })
	return p
}

func rndContains(s []int, x int) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// rndComp is a generated component: its plan, and what it recorded in the
// run. Its wrappers (rndPlain, rndRdy, rndDrn, rndBoth) give it the optional
// interfaces the plan chose.
type rndComp struct {
	// The plan.
	deps        int
	afterIdx    []int // depNamed: the components named in After, in order
	needs       []int // what it needs, each once
	stopTimeout time.Duration
	readier     bool
	drainer     bool
	start       rndStart
	when        rndWhen
	delay       time.Duration // a Readier: how long Start takes to be ready (or to fail before)
	readyF      rndReady
	drainF      rndDrain
	stopF       rndStop

	// The run.
	name     string
	seq      *atomic.Int64 // the run's counter: orders calls and events
	over     *atomic.Bool  // set once Run has returned
	startErr error         // the injected errors and panic values
	stopErr  error
	panics   [4]string // Ready, Start, Stop, Drain

	ready     chan struct{} // closed by Start once ready
	never     chan struct{} // rfNever: the channel nothing closes
	quit      chan struct{} // closed by Stop
	quitOnce  sync.Once
	fire      chan struct{} // closed by the driver or the observer: fail now
	fireOnce  sync.Once
	release   chan struct{} // closed by the test once Run returned: hanging calls return
	readyDone chan struct{} // closed when Ready returns (or panics)
	startDone chan struct{}
	stopDone  chan struct{}
	drainDone chan struct{}

	readyCalls, startCalls, stopCalls, drainCalls atomic.Int32
	readySeq, startSeq, stopSeq, drainSeq         atomic.Int64
	closedSeq                                     atomic.Int64 // when Start closed ready

	readyFired, startFired, stopFired, drainFired atomic.Bool // the fault happened
	startHung, readyHung, stopHung, drainHung     atomic.Bool // the call blocks until release

	// What a call saw when it began: the violations the checker reports.
	abandoned         atomic.Bool // set by the observer at EventAbandoned in the stop phase
	startAfterAbandon atomic.Bool
	lateCall          atomic.Value // string: a Start that began after Run returned
	drainAfterStop    atomic.Bool

	mu          sync.Mutex
	stopCtxErr  error // Stop's ctx.Err() when Stop was called
	stopCtxDL   time.Time
	stopCtxHas  bool
	stopCtxDone bool // Stop's ctx was done when Stop returned
}

type (
	rndPlain struct{ *rndComp }
	rndRdy   struct{ *rndComp }
	rndDrn   struct{ *rndComp }
	rndBoth  struct{ *rndComp }
)

func (c rndRdy) Ready() <-chan struct{}  { return c.readyChan() }
func (c rndBoth) Ready() <-chan struct{} { return c.readyChan() }
func (c rndDrn) Drain()                  { c.drainNow() }
func (c rndBoth) Drain()                 { c.drainNow() }

// component returns c with the optional interfaces of its plan.
func (c *rndComp) component() Component {
	switch {
	case c.readier && c.drainer:
		return rndBoth{c}
	case c.readier:
		return rndRdy{c}
	case c.drainer:
		return rndDrn{c}
	}
	return rndPlain{c}
}

func (c *rndComp) init(name string, seq *atomic.Int64, over *atomic.Bool, release chan struct{}) {
	c.name = name
	c.seq, c.over, c.release = seq, over, release
	c.startErr = errors.New("injected Start failure of " + name)
	c.stopErr = errors.New("injected Stop failure of " + name)
	for i, m := range []string{"Ready", "Start", "Stop", "Drain"} {
		c.panics[i] = "injected " + m + " panic of " + name
	}
	c.ready = make(chan struct{})
	c.never = make(chan struct{})
	c.quit = make(chan struct{})
	c.fire = make(chan struct{})
	c.readyDone = make(chan struct{})
	c.startDone = make(chan struct{})
	c.stopDone = make(chan struct{})
	c.drainDone = make(chan struct{})
}

// enter records a call's beginning: its order, and whether it comes after
// Run returned. Only a late Start is wrong: a Stop, a Drain or a Ready the
// Group launched on a goroutine before it gave up on the component may be
// scheduled after Run returned (Stop is called once even when its time is
// up), but a component must not be started once the Group is over.
func (c *rndComp) enter(what string, seq *atomic.Int64) {
	seq.Store(c.seq.Add(1))
	if what == "Start" && c.over.Load() {
		c.lateCall.CompareAndSwap(nil, what)
	}
}

func (c *rndComp) fireNow() { c.fireOnce.Do(func() { close(c.fire) }) }

func (c *rndComp) readyChan() <-chan struct{} {
	if c.readyCalls.Add(1) > 1 {
		return c.ready // reported by the checker
	}
	c.enter("Ready", &c.readySeq)
	defer close(c.readyDone)
	switch c.readyF {
	case rfPanic:
		c.readyFired.Store(true)
		panic(c.panics[0])
	case rfHang:
		c.readyHung.Store(true)
		<-c.release
	case rfNil:
		return nil
	case rfNever:
		return c.never
	}
	return c.ready
}

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
		return errors.New("Start called twice") // reported by the checker
	}
	c.enter("Start", &c.startSeq)
	if c.abandoned.Load() {
		c.startAfterAbandon.Store(true)
	}
	defer close(c.startDone)
	select {
	case <-c.quit:
		return nil // stopped before it started: return at once
	default:
	}
	if c.pause(c.delay) {
		return nil
	}
	if c.start.before() && c.when == rndAtShutdown {
		select {
		case <-c.fire:
		case <-c.quit:
			return nil
		}
	}
	switch c.start {
	case sfFailBefore:
		c.startFired.Store(true)
		return c.startErr
	case sfPanicBefore:
		c.startFired.Store(true)
		panic(c.panics[1])
	case sfNilBefore:
		c.startFired.Store(true)
		return nil
	case sfHangBefore:
		c.startHung.Store(true)
		<-c.release
		return nil
	}
	c.closedSeq.Store(c.seq.Add(1))
	close(c.ready)
	switch c.start {
	case sfFail, sfPanic, sfNil:
		if c.when != rndAtStart {
			select {
			case <-c.fire:
			case <-c.quit:
				return nil
			case <-ctx.Done():
				return nil
			}
		}
		c.startFired.Store(true)
		switch c.start {
		case sfFail:
			return c.startErr
		case sfPanic:
			panic(c.panics[1])
		}
		return nil
	case sfHang:
		c.startHung.Store(true)
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
		return errors.New("Stop called twice") // reported by the checker
	}
	c.enter("Stop", &c.stopSeq)
	dl, ok := ctx.Deadline()
	c.mu.Lock()
	c.stopCtxErr, c.stopCtxDL, c.stopCtxHas = ctx.Err(), dl, ok
	c.mu.Unlock()
	defer close(c.stopDone)
	defer func() {
		c.mu.Lock()
		c.stopCtxDone = ctx.Err() != nil
		c.mu.Unlock()
	}()
	c.quitOnce.Do(func() { close(c.quit) })
	switch c.stopF {
	case stFail:
		c.stopFired.Store(true)
		return c.stopErr
	case stPanic:
		c.stopFired.Store(true)
		panic(c.panics[2])
	case stHang:
		c.stopHung.Store(true)
		<-c.release
		return nil
	case stSlow:
		<-ctx.Done()
		c.stopFired.Store(true)
		return ctx.Err()
	}
	select {
	case <-c.startDone:
	case <-ctx.Done():
	}
	return nil
}

func (c *rndComp) drainNow() {
	if c.drainCalls.Add(1) > 1 {
		return // reported by the checker
	}
	c.enter("Drain", &c.drainSeq)
	if c.stopCalls.Load() > 0 {
		c.drainAfterStop.Store(true)
	}
	defer close(c.drainDone)
	switch c.drainF {
	case dfPanic:
		c.drainFired.Store(true)
		panic(c.panics[3])
	case dfHang:
		c.drainHung.Store(true)
		<-c.release
	}
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
	late       []rndEvent        // events observed after Run returned
	ready      <-chan struct{}   // g.Ready()
	status     []ComponentStatus // g.Status() after Run
	stopErr    error             // rndStopCall: what Stop returned
	stopPhase  Phase             // rndStopCall: g.Phase() when Stop returned

	// At the moment Run returned, for each component: which of its calls
	// had begun and not returned.
	openReady, openStart, openStop, openDrain []bool
}

// rndRunID makes the component names of each run unique in the process, so
// that the pprof labels of one run's goroutines are told apart from those
// of runs in parallel.
var rndRunID atomic.Int64

// rndRun runs the plan in a Group and returns what happened. Once Run has
// returned it releases the hanging calls and waits until every call the
// Group made has returned and every goroutine of the run has ended.
func rndRun(t testing.TB, p *rndPlan) *rndResult {
	var (
		seq      atomic.Int64
		over     atomic.Bool
		release  = make(chan struct{})
		mu       sync.Mutex
		res      = &rndResult{}
		nready   int
		byName   = map[string]*rndComp{}
		running  = make(chan struct{})
		shut     = make(chan struct{})
		shutOnce sync.Once
		runOnce  sync.Once
		prefix   = fmt.Sprintf("r%d-", rndRunID.Add(1))
		g        *Group
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, c := range p.comps {
		c.init(fmt.Sprintf("%sc%d", prefix, i), &seq, &over, release)
		byName[c.name] = c
	}
	begin := func() { // what the driver does at "at"
		switch p.end {
		case rndCancelAt:
			cancel()
		case rndShutdownAt:
			g.Shutdown(errRndShutdown)
		}
	}
	observe := func(ev Event) {
		mu.Lock()
		if over.Load() {
			res.late = append(res.late, rndEvent{ev, seq.Add(1)})
		} else {
			res.events = append(res.events, rndEvent{ev, seq.Add(1)})
		}
		mu.Unlock()
		switch ev.Kind {
		case EventPhase:
			if ev.Phase == PhaseRunning {
				runOnce.Do(func() { close(running) })
			}
			if ev.Phase == PhaseDraining {
				for _, c := range p.comps {
					if c.start.fires() && c.when == rndAtDrain {
						c.fireNow()
					}
				}
			}
		case EventShutdown:
			shutOnce.Do(func() { close(shut) }) // a second one is an error for rndCheck
			for _, c := range p.comps {
				if c.start.before() && c.when == rndAtShutdown {
					c.fireNow()
				}
			}
		case EventAbandoned:
			if c := byName[ev.Component]; c != nil && ev.Phase == PhaseStopping {
				c.abandoned.Store(true)
			}
		case EventReady:
			mu.Lock()
			nready++
			n := nready
			mu.Unlock()
			if c := byName[ev.Component]; c != nil && c.start.fires() && c.when == rndAfterReady {
				c.fireNow()
			}
			if n == p.at {
				begin()
			}
		}
	}
	g = New(WithSignals(), WithLogger(nil), WithShutdownTimeout(p.budget), WithDrainDelay(p.drain),
		WithStartTimeout(p.startTimeout), WithObserver(observe))
	for _, c := range p.comps {
		var opts []AddOption
		switch c.deps {
		case depNone:
			opts = append(opts, After())
		case depNamed:
			names := make([]string, len(c.afterIdx))
			for i, j := range c.afterIdx {
				names[i] = p.comps[j].name
			}
			opts = append(opts, After(names...))
		}
		if c.stopTimeout > 0 {
			opts = append(opts, StopTimeout(c.stopTimeout))
		}
		g.Add(c.name, c.component(), opts...)
	}
	if p.at == 0 {
		begin()
	}
	errc := make(chan error, 1)
	stopc := make(chan error, 1)
	res.began = time.Now()
	go func() { errc <- g.Run(ctx) }()

	// Drive: once the Group is running, end it as the plan says.
	stopCalled := false
	select {
	case <-running:
		switch p.end {
		case rndFire:
			for _, i := range p.fire {
				p.comps[i].fireNow()
			}
			if len(p.fire) == 0 {
				cancel()
			}
		case rndShutdown:
			g.Shutdown(errRndShutdown)
		case rndStopCall:
			stopCalled = true
			go func() {
				err := g.Stop(context.Background())
				res.stopPhase = g.Phase()
				stopc <- err
			}()
		case rndCancel:
			cancel()
		}
	case <-shut:
	}

	failsafe := time.NewTimer(rndFailsafe)
	defer failsafe.Stop()
	select {
	case res.err = <-errc:
		over.Store(true)
	case <-failsafe.C:
		mu.Lock()
		evs := append([]rndEvent(nil), res.events...)
		mu.Unlock()
		var prof strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&prof, 1)
		t.Fatalf("Run did not return within %v\nplan: %v\nevents:%s\ngoroutines of its components:\n%s",
			rndFailsafe, p, rndDump(evs, res.began, prefix), rndStacksWith(prof.String(), prefix))
	}
	res.end = time.Now()
	for _, c := range p.comps {
		res.openReady = append(res.openReady, c.readyCalls.Load() > 0 && !rndIsClosed(c.readyDone))
		res.openStart = append(res.openStart, c.startCalls.Load() > 0 && !rndIsClosed(c.startDone))
		res.openStop = append(res.openStop, c.stopCalls.Load() > 0 && !rndIsClosed(c.stopDone))
		res.openDrain = append(res.openDrain, c.drainCalls.Load() > 0 && !rndIsClosed(c.drainDone))
	}
	res.phase, res.cause, res.ready, res.status = g.Phase(), g.Cause(), g.Ready(), g.Status()
	if stopCalled {
		select {
		case res.stopErr = <-stopc:
		case <-failsafe.C:
			t.Fatalf("Stop did not return within %v of Run\nplan: %v", rndFailsafe, p)
		}
	}

	// Cleanup: release the hanging calls, wait until every call the Group
	// made or announced (an event before the call) has returned, then until
	// no goroutine labelled with a component of this run is left.
	close(release)
	mu.Lock()
	evs := append([]rndEvent(nil), res.events...)
	mu.Unlock()
	waitFor := func(c *rndComp, ch chan struct{}, what string) {
		select {
		case <-ch:
		case <-failsafe.C:
			t.Fatalf("%s: %s did not return after release\nplan: %v", c.name, what, p)
		}
	}
	for _, c := range p.comps {
		if c.readyCalls.Load() > 0 {
			waitFor(c, c.readyDone, "Ready")
		}
		if c.startCalls.Load() > 0 {
			waitFor(c, c.startDone, "Start")
		}
		if c.stopCalls.Load() > 0 || rndFind(evs, EventStopping, c.name, -1) >= 0 {
			waitFor(c, c.stopDone, "Stop")
		}
		if c.drainCalls.Load() > 0 || rndFind(evs, EventDraining, c.name, -1) >= 0 {
			waitFor(c, c.drainDone, "Drain")
		}
	}
	if rndAbandoned(evs) {
		// Goroutines of the Group that were abandoned may go on calling the
		// component (a Start after a Ready that hung): wait until they
		// have ended, then for what they called.
		rndWaitGone(t, prefix, failsafe.C, p)
		for _, c := range p.comps {
			if c.startCalls.Load() > 0 {
				waitFor(c, c.startDone, "Start")
			}
		}
	}
	mu.Lock()
	res.events = append([]rndEvent(nil), res.events...)
	res.late = append([]rndEvent(nil), res.late...)
	mu.Unlock()
	return res
}

func rndAbandoned(evs []rndEvent) bool {
	for _, ev := range evs {
		if ev.Kind == EventAbandoned {
			return true
		}
	}
	return false
}

// rndWaitGone waits until no goroutine carries the pprof label of a
// component whose name begins with prefix: the Group labels every goroutine
// that works for a component (see ComponentError.Stacks), so this is the
// moment every goroutine of the run has ended. It polls the goroutine
// profile: there is nothing to wait on for a goroutine's end.
func rndWaitGone(t testing.TB, prefix string, failsafe <-chan time.Time, p *rndPlan) {
	want := fmt.Sprintf("%q:%q", labelKey, prefix)
	want = want[:len(want)-1] // the name goes on
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var b strings.Builder
		if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
			t.Fatalf("goroutine profile: %v", err)
		}
		if !strings.Contains(b.String(), want) {
			return
		}
		select {
		case <-tick.C:
		case <-failsafe:
			t.Fatalf("goroutines of the run are left after release:\n%s\nplan: %v", rndStacksWith(b.String(), want), p)
		}
	}
}

func rndStacksWith(profile, label string) string {
	var out []string
	for _, rec := range strings.Split(profile, "\n\n") {
		if strings.Contains(rec, label) {
			out = append(out, rec)
		}
	}
	return strings.Join(out, "\n\n")
}

func rndIsClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// rndFind returns the index of the first event of kind k for component name
// (in phase ph, if ph ≥ 0), or -1.
func rndFind(evs []rndEvent, k EventKind, name string, ph Phase) int {
	for i := range evs {
		if evs[i].Kind == k && evs[i].Component == name && (ph < 0 || evs[i].Phase == ph) {
			return i
		}
	}
	return -1
}

// rndLeaves flattens an error tree made by errors.Join into its
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
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range u.Unwrap() {
				walk(e)
			}
			return
		}
		others = append(others, err)
	}
	walk(err)
	return comps, others
}

// rndAt is where a component's events are in the run's events (-1: none).
type rndAt struct {
	starting, ready, exited, draining, drained, stopping, stopped, abandonStop, abandonDrain int
}

// rndChecker checks what one run recorded against the contract. Its fields
// are what the checks share: where the events are, and what they found.
type rndChecker struct {
	t     testing.TB
	p     *rndPlan
	res   *rndResult
	evs   []rndEvent
	index map[string]int // a component's place in the plan, by name

	at       []rndAt       // where each component's events are
	phaseAt  map[Phase]int // where the Group entered each phase
	shutdown int           // where EventShutdown is
	sh       Event         // EventShutdown
	deadline time.Time     // the shutdown deadline
	running  bool          // the Group reached running
	reserves []time.Duration

	abandoned, startTimeout, timeoutStop bool // what explains ErrTimeout
}

func (k *rndChecker) fail(format string, args ...any) {
	k.t.Helper()
	k.t.Errorf(format, args...)
}

// rndBefore reports whether event i happened, and before event j if j did.
func rndBefore(i, j int) bool { return i >= 0 && (j < 0 || i < j) }

// rndCheck checks the contract on what the run recorded; the numbers in the
// comments are those of the rules in the package's task (issue 9).
func rndCheck(t testing.TB, p *rndPlan, res *rndResult) {
	t.Helper()
	k := &rndChecker{t: t, p: p, res: res, evs: res.events, index: map[string]int{}, reserves: rndReserves(p)}
	for i, c := range p.comps {
		k.index[c.name] = i
	}
	defer func() {
		if t.Failed() {
			t.Logf("plan: %v\nRun took %v; err: %v\nevents:%s", p, res.end.Sub(res.began), res.err, rndDump(res.events, res.began, rndPrefix(p)))
		}
	}()
	k.group()
	k.locate()
	k.starts()
	for ci := range p.comps {
		k.calls(ci)
		k.stopOrder(ci)
		k.stopTime(ci)
		k.drain(ci)
	}
	k.after()
	k.readinessOff()
	k.budget()
	k.errors()
}

// group checks the Group's own events: phases in order, ending stopped; one
// shutdown, with the budget as its deadline.
func (k *rndChecker) group() {
	t, p, res, evs, index := k.t, k.p, k.res, k.evs, k.index
	fail := k.fail
	// The Group's events: phases in order, ending stopped; one shutdown.
	shutdown := -1
	phaseAt := map[Phase]int{}
	k.phaseAt = phaseAt
	last := PhaseIdle
	for i, ev := range evs {
		switch ev.Kind {
		case EventPhase:
			if ev.Phase <= last {
				fail("phase %v after %v", ev.Phase, last)
			}
			last = ev.Phase
			phaseAt[ev.Phase] = i
		case EventShutdown:
			if shutdown >= 0 {
				fail("second EventShutdown: %v", ev.Err)
			}
			shutdown = i
		case EventForced:
			fail("EventForced without signals")
		case EventRestarting, EventGaveUp:
			fail("%v without a restart policy", ev.Kind)
		}
		if ev.Component != "" {
			if _, ok := index[ev.Component]; !ok {
				fail("event %v for an unknown component %q", ev.Kind, ev.Component)
			}
		}
	}
	if len(res.late) > 0 {
		fail("%d events after Run returned, the first %v %s", len(res.late), res.late[0].Kind, res.late[0].Component)
	}
	if last != PhaseStopped || res.phase != PhaseStopped {
		fail("last phase event %v, Phase() %v; want stopped", last, res.phase)
	}
	if shutdown < 0 {
		t.Fatalf("no EventShutdown")
	}
	sh := evs[shutdown].Event
	k.shutdown, k.sh = shutdown, sh
	if res.cause == nil || res.cause != sh.Err {
		fail("Cause() = %v, EventShutdown.Err = %v; want the same, not nil", res.cause, sh.Err)
	}
	// The Group took the time of the shutdown's beginning between the event
	// before it (or Run's call) and this one.
	shutdownBegan := res.began
	if shutdown > 0 {
		shutdownBegan = evs[shutdown-1].Time
	}
	if sh.Deadline.After(sh.Time.Add(p.budget)) || sh.Deadline.Before(shutdownBegan.Add(p.budget-rndSlop)) {
		fail("EventShutdown: deadline %v after the event; want the budget %v", sh.Deadline.Sub(sh.Time), p.budget)
	}
	k.deadline = sh.Deadline
	if i, ok := phaseAt[PhaseRunning]; ok {
		k.running = true
		if i > shutdown {
			fail("the Group entered running after the shutdown began")
		}
	}
}

// locate finds each component's events; each comes at most once.
func (k *rndChecker) locate() {
	p, evs, index := k.p, k.evs, k.index
	fail := k.fail
	// Where each component's events are; each at most once.
	at := make([]rndAt, len(p.comps))
	k.at = at
	for i := range at {
		at[i] = rndAt{-1, -1, -1, -1, -1, -1, -1, -1, -1}
	}
	for i, ev := range evs {
		ci, ok := index[ev.Component]
		if !ok {
			continue
		}
		a := &at[ci]
		var slot *int
		switch ev.Kind {
		case EventStarting:
			slot = &a.starting
		case EventReady:
			slot = &a.ready
		case EventExited:
			slot = &a.exited
		case EventDraining:
			slot = &a.draining
		case EventDrained:
			slot = &a.drained
		case EventStopping:
			slot = &a.stopping
		case EventStopped:
			slot = &a.stopped
		case EventAbandoned:
			switch ev.Phase {
			case PhaseStopping:
				slot = &a.abandonStop
			case PhaseDraining:
				slot = &a.abandonDrain
			default:
				fail("%s abandoned in phase %v", ev.Component, ev.Phase)
				continue
			}
		}
		if slot == nil {
			continue
		}
		if *slot >= 0 {
			fail("%s: a second %v event (phase %v)", ev.Component, ev.Kind, ev.Phase)
			continue
		}
		*slot = i
	}
}

// starts checks rule 1: a component starts once all it needs is ready, at
// once, never after the shutdown began.
func (k *rndChecker) starts() {
	p, evs, at, shutdown, phaseAt := k.p, k.evs, k.at, k.shutdown, k.phaseAt
	fail := k.fail
	// 1. Start: a component starts once everything it needs is ready, at
	// once (only other starts in between), and never after the shutdown
	// began; one whose needs were all ready before the shutdown started.
	for ci, c := range p.comps {
		a := at[ci]
		if a.starting < 0 {
			allReady := true
			for _, d := range c.needs {
				allReady = allReady && rndBefore(at[d].ready, shutdown)
			}
			if _, ok := phaseAt[PhaseStarting]; allReady && ok {
				fail("%s: everything it needs was ready before the shutdown, yet it never started", c.name)
			}
			continue
		}
		if a.starting > shutdown {
			fail("%s started after the shutdown began", c.name)
		}
		from, ok := phaseAt[PhaseStarting]
		if !ok {
			fail("%s started outside the start phase", c.name)
		}
		for _, d := range c.needs {
			r := at[d].ready
			if !rndBefore(r, a.starting) {
				fail("%s started before %s, which it needs, was ready", c.name, p.comps[d].name)
			}
			from = max(from, r)
		}
		for k := from + 1; k < a.starting; k++ {
			if evs[k].Kind != EventStarting {
				fail("%s started late: %v %s came between what it waited for and its start", c.name, evs[k].Kind, evs[k].Component)
				break
			}
		}
	}
}

// calls checks a component's calls against its events (rule 3: Start at
// most once, Stop exactly once if it started and did not fail before it was
// ready), its readiness, and that what began was settled.
func (k *rndChecker) calls(ci int) {
	p, res, evs, at, phaseAt := k.p, k.res, k.evs, k.at, k.phaseAt
	fail := k.fail
	c, a := p.comps[ci], at[ci]
	starts, stops, drains, readies := c.startCalls.Load(), c.stopCalls.Load(), c.drainCalls.Load(), c.readyCalls.Load()
	if starts > 1 || stops > 1 || drains > 1 || readies > 1 {
		fail("%s: Ready×%d Start×%d Stop×%d Drain×%d; want each at most once", c.name, readies, starts, stops, drains)
	}
	if what, ok := c.lateCall.Load().(string); ok {
		fail("%s: %s called after Run returned", c.name, what)
	}
	if c.startAfterAbandon.Load() {
		fail("%s: Start called after the component was abandoned", c.name)
	}
	if a.abandonStop >= 0 || a.abandonDrain >= 0 {
		k.abandoned = true
	}
	if a.starting < 0 {
		if starts+stops+drains+readies != 0 || a.ready+a.exited+a.draining+a.stopping+a.abandonStop+a.abandonDrain != -6 {
			fail("%s never started, but Ready×%d Start×%d Stop×%d Drain×%d, or events", c.name, readies, starts, stops, drains)
		}
		return
	}
	// Calls come after the events that announce them.
	if starts == 1 && c.startSeq.Load() < evs[a.starting].seq {
		fail("%s: Start called before EventStarting", c.name)
	}
	if c.readier && readies != 1 {
		fail("%s: a Readier started, Ready called %d times; want 1", c.name, readies)
	}
	if starts == 0 && !(c.readyF == rfPanic || c.readyF == rfHang) {
		fail("%s: EventStarting, but Start never called", c.name)
	}
	if stops == 1 && !rndBefore(a.stopping, -1) {
		fail("%s: Stop called without EventStopping", c.name)
	}
	if a.stopping >= 0 && stops != 1 {
		fail("%s: EventStopping, but Stop called %d times", c.name, stops)
	}
	if a.stopping >= 0 && c.stopSeq.Load() < evs[a.stopping].seq {
		fail("%s: Stop called before EventStopping", c.name)
	}
	if drains == 1 && a.draining < 0 || a.draining >= 0 && drains != 1 {
		fail("%s: Drain called %d times, EventDraining %t", c.name, drains, a.draining >= 0)
	}

	// Ready: reported only once the component said so; a channel closed
	// before Start returned counts, before its exit.
	if a.ready >= 0 {
		if a.ready < a.starting {
			fail("%s: ready before it started", c.name)
		}
		if c.readier && c.readyF != rfNil && (c.closedSeq.Load() == 0 || c.closedSeq.Load() > evs[a.ready].seq) {
			fail("%s: EventReady before it closed its Ready channel", c.name)
		}
		if c.readyF == rfNever || c.readyF == rfPanic || c.start == sfHangBefore && c.readyF != rfNil {
			fail("%s (%s %s) can never be ready, yet EventReady", c.name, rfNames[c.readyF], sfNames[c.start])
		}
	} else if c.readier && c.readyF == rfNone && c.closedSeq.Load() > 0 && a.exited >= 0 && !rndBefore(a.stopping, a.exited) {
		fail("%s closed its Ready channel before its Start returned, but was never reported ready", c.name)
	}

	// 3. Stopped exactly once if it started and did not fail before it
	// was ready; never if it failed before (the engine cannot know in
	// the instant the failure and the Stop cross: then Stop comes
	// before the exit).
	failedBefore := a.exited >= 0 && !rndBefore(a.ready, a.exited) && !rndBefore(a.stopping, a.exited)
	if failedBefore && a.stopping >= 0 {
		fail("%s: its Start failed before it was ready, yet it was stopped", c.name)
	}
	if !failedBefore && a.stopping < 0 {
		fail("%s: started (ready %t, Start returned %t), but never stopped", c.name, a.ready >= 0, a.exited >= 0)
	}

	// Everything that began is settled before the run ends: stopped,
	// abandoned, or failed before it was ready.
	if a.stopping >= 0 && (a.stopped >= 0) == (a.abandonStop >= 0) {
		fail("%s: stopping, then stopped %t and abandoned %t; want exactly one", c.name, a.stopped >= 0, a.abandonStop >= 0)
	}
	for _, k := range []int{a.stopped, a.abandonStop} {
		if k >= 0 && k < a.stopping {
			fail("%s: %v before EventStopping", c.name, evs[k].Kind)
		}
		if k >= 0 && k > phaseAt[PhaseStopped] {
			fail("%s: %v after the Group stopped", c.name, evs[k].Kind)
		}
	}
	// A Start that had not returned when Run returned is abandoned.
	if a.abandonStop < 0 && (a.exited < 0 || res.openStart[ci] || res.openReady[ci] || res.openStop[ci]) {
		fail("%s: not abandoned, but when Run returned: EventExited %t, in Ready %t, in Start %t, in Stop %t",
			c.name, a.exited >= 0, res.openReady[ci], res.openStart[ci], res.openStop[ci])
	}
	if a.abandonDrain < 0 && res.openDrain[ci] {
		fail("%s: its Drain had not returned when Run returned, and it was not abandoned", c.name)
	}
	if a.exited >= 0 {
		exitErr := evs[a.exited].Err
		var pe *PanicError
		switch {
		case c.readyFired.Load():
			if !errors.As(exitErr, &pe) || pe.Value != c.panics[0] {
				fail("%s: Ready panicked, EventExited.Err = %v", c.name, exitErr)
			}
		case c.startFired.Load() && (c.start == sfFail || c.start == sfFailBefore):
			if !errors.Is(exitErr, c.startErr) {
				fail("%s: Start failed, EventExited.Err = %v", c.name, exitErr)
			}
		case c.startFired.Load() && (c.start == sfPanic || c.start == sfPanicBefore):
			if !errors.As(exitErr, &pe) || pe.Value != c.panics[1] || len(pe.Stack) == 0 {
				fail("%s: Start panicked, EventExited.Err = %v", c.name, exitErr)
			}
		case exitErr != nil:
			fail("%s: Start returned nil, EventExited.Err = %v", c.name, exitErr)
		}
	}
}

// stopOrder checks rule 2: a component stops once all that needs it has
// settled, and then at once.
func (k *rndChecker) stopOrder(ci int) {
	p, evs, at, shutdown, phaseAt := k.p, k.evs, k.at, k.shutdown, k.phaseAt
	fail := k.fail
	c, a := p.comps[ci], at[ci]
	// 2. Stop: only once everything that needs it has settled, and then
	// at once (only other stops in between).
	if a.stopping >= 0 {
		if a.stopping < shutdown {
			fail("%s stopped before the shutdown began", c.name)
		}
		from, ok := phaseAt[PhaseStopping]
		if !ok || from > a.stopping {
			fail("%s: EventStopping before the stop phase", c.name)
		}
		for di, d := range p.comps {
			if !rndContains(d.needs, ci) || at[di].starting < 0 {
				continue
			}
			da := at[di]
			settled := -1
			switch {
			case da.stopped >= 0:
				settled = da.stopped
			case da.abandonStop >= 0:
				settled = da.abandonStop
			case da.stopping < 0 && da.exited >= 0:
				settled = da.exited // failed before it was ready
			}
			if !rndBefore(settled, a.stopping) {
				fail("%s stopped before %s, which needs it, had settled", c.name, d.name)
			}
			from = max(from, settled)
		}
		// Its turn may come while its ready is on the way (its Start had
		// returned, so whether it is stopped depends on that ready): then it
		// is stopped as soon as its ready arrives.
		for k := from + 1; k < a.stopping; k++ {
			if evs[k].Kind == EventReady && evs[k].Component == c.name {
				from = k
			}
		}
		for k := from + 1; k < a.stopping; k++ {
			if evs[k].Kind != EventStopping {
				fail("%s stopped late: %v %s came between what it waited for and its stop", c.name, evs[k].Kind, evs[k].Component)
				break
			}
		}
	}
}

// stopTime checks rule 5: a component's time to stop (the budget rule), its
// Stop's context, and its abandonment.
func (k *rndChecker) stopTime(ci int) {
	p, res, evs, at, deadline, reserves := k.p, k.res, k.evs, k.at, k.deadline, k.reserves
	fail := k.fail
	c, a := p.comps[ci], at[ci]
	stops := c.stopCalls.Load()
	// 5. The stop's deadline and context, and abandonment.
	if a.stopping >= 0 {
		ev := evs[a.stopping]
		own := ev.Deadline.Sub(ev.Time) // the time it was given
		// The Group decided its deadline at some moment between the
		// previous event and this one.
		decided := evs[a.stopping-1].Time
		if ev.Deadline.After(deadline) && ev.Deadline.After(ev.Time) {
			fail("%s: EventStopping.Deadline %v after the shutdown deadline, which had not passed", c.name, ev.Deadline.Sub(deadline))
		}
		if ev.Deadline.Before(decided) {
			fail("%s: EventStopping.Deadline %v before the Group decided it", c.name, decided.Sub(ev.Deadline))
		}
		if c.stopTimeout > 0 && own > c.stopTimeout {
			fail("%s: %v to stop; want at most its StopTimeout %v", c.name, own, c.stopTimeout)
		}
		// The budget rule of the package documentation: its stop ends at
		// the deadline less its reserve, or at its StopTimeout, but not
		// before the moment it begins.
		end := func(now time.Time) time.Time {
			e := deadline.Add(-reserves[ci])
			if c.stopTimeout > 0 && now.Add(c.stopTimeout).Before(e) {
				e = now.Add(c.stopTimeout)
			}
			if e.Before(now) {
				e = now
			}
			return e
		}
		if lo, hi := end(decided), end(ev.Time); ev.Deadline.Before(lo.Add(-rndSlop)) || ev.Deadline.After(hi.Add(rndSlop)) {
			fail("%s: EventStopping.Deadline +%v; want between +%v and +%v (reserve %v)", c.name,
				ev.Deadline.Sub(res.began), lo.Sub(res.began), hi.Sub(res.began), reserves[ci])
		}
		c.mu.Lock()
		ctxErr, ctxDL, ctxHas, ctxDone := c.stopCtxErr, c.stopCtxDL, c.stopCtxHas, c.stopCtxDone
		c.mu.Unlock()
		if stops == 1 {
			grace := min(maxHardGrace, ev.Deadline.Sub(decided)/5)
			switch {
			case !ctxHas:
				fail("%s: Stop's ctx has no deadline", c.name)
			case ctxDL.After(ev.Deadline):
				fail("%s: Stop's ctx deadline %v after EventStopping.Deadline", c.name, ctxDL.Sub(ev.Deadline))
			case ev.Deadline.Sub(ctxDL) > grace+rndSlop:
				fail("%s: Stop's ctx ends %v before its deadline; want at most a fifth of its time %v (≤ %v)", c.name, ev.Deadline.Sub(ctxDL), own, maxHardGrace)
			case ev.Deadline.Sub(ctxDL) < min(maxHardGrace, max(own, 0)/5)-rndSlop:
				fail("%s: Stop's ctx ends %v before its deadline; want a fifth of its time %v (≤ %v) to close hard", c.name, ev.Deadline.Sub(ctxDL), own, maxHardGrace)
			}
			if ctxErr != nil && own >= rndSched {
				fail("%s: Stop's ctx was done when Stop was called (%v), with %v to stop", c.name, ctxErr, own)
			}
			if ctxDone && (c.stopF == stFail || c.stopF == stSlow) && c.stopFired.Load() {
				k.timeoutStop = true // its error is tagged with ErrTimeout
			}
		}
		if ab := a.abandonStop; ab >= 0 {
			t := evs[ab].Time
			if t.Before(ev.Deadline.Add(-rndSlop)) {
				fail("%s abandoned %v before its deadline", c.name, ev.Deadline.Sub(t))
			}
			if t.After(ev.Deadline.Add(rndSlack)) {
				fail("%s abandoned %v after its deadline", c.name, t.Sub(ev.Deadline))
			}
			hangs := c.startHung.Load() || c.readyHung.Load() || c.stopHung.Load() || c.stopF == stSlow
			if !hangs && own >= rndSched {
				fail("%s abandoned though nothing of it hangs, with %v to stop", c.name, own)
			}
		}
	}
	if (c.startHung.Load() || c.readyHung.Load() || c.stopHung.Load()) && a.stopping >= 0 && a.abandonStop < 0 {
		fail("%s hangs until released, and was stopped, but not abandoned", c.name)
	}
}

// drain checks rule 8: every Drainer running when the drain began gets
// Drain once, after readiness turned off and before its Stop.
func (k *rndChecker) drain(ci int) {
	p, res, evs, at, phaseAt, deadline := k.p, k.res, k.evs, k.at, k.phaseAt, k.deadline
	fail := k.fail
	c, a := p.comps[ci], at[ci]
	// 8. Drain: every Drainer running when the drain began, once, after
	// readiness turned off and before its Stop.
	dr, hasDr := phaseAt[PhaseDraining]
	wantDrain := c.drainer && hasDr && rndBefore(a.ready, dr)
	if wantDrain != (a.draining >= 0) {
		fail("%s: Drainer %t, ready before the drain %t, but EventDraining %t", c.name, c.drainer, hasDr && rndBefore(a.ready, dr), a.draining >= 0)
	}
	if a.draining >= 0 {
		if a.draining < dr {
			fail("%s: Drain before readiness turned off", c.name)
		}
		if !rndBefore(a.draining, a.stopping) || c.drainAfterStop.Load() {
			fail("%s: Drain not before its Stop", c.name)
		}
		if c.drainSeq.Load() < evs[a.draining].seq {
			fail("%s: Drain called before EventDraining", c.name)
		}
		if (a.drained >= 0) == (a.abandonDrain >= 0) {
			fail("%s: Drain returned %t, abandoned %t; want exactly one", c.name, a.drained >= 0, a.abandonDrain >= 0)
		}
		if a.abandonDrain >= 0 {
			if !c.drainHung.Load() {
				fail("%s: Drain abandoned, though it returns at once", c.name)
			}
			if t := evs[a.abandonDrain].Time; t.Before(evs[dr].Deadline.Add(-rndSlop)) || t.After(deadline.Add(rndSlack)) {
				fail("%s: Drain abandoned at +%v: not between the end of the drain delay and the deadline", c.name, t.Sub(res.began))
			}
		}
	}
}

// after checks what the Group says once Run returned: its readiness, and
// each component's final state, as the events tell it.
func (k *rndChecker) after() {
	p, res, at, reachedRunning := k.p, k.res, k.at, k.running
	fail := k.fail
	// What the Group says after Run: its readiness, and each component's
	// final state, as the events tell it.
	if got := rndIsClosed(res.ready); got != reachedRunning {
		fail("Ready() closed %t; the Group reached running %t", got, reachedRunning)
	}
	if len(res.status) != len(p.comps) {
		fail("Status() has %d components; want %d", len(res.status), len(p.comps))
	} else {
		for ci, c := range p.comps {
			a, st := at[ci], res.status[ci]
			want := StateStopped
			switch {
			case a.starting < 0:
				want = StateIdle
			case a.abandonStop >= 0:
				want = StateAbandoned
			case a.stopping < 0:
				want = StateFailed
			}
			if st.Name != c.name || st.State != want {
				fail("Status()[%d] = %s %v; want %s %v", ci, st.Name, st.State, c.name, want)
			}
		}
	}
}

// readinessOff checks rule 9, and that the drain delay is waited only where
// there is something to drain.
func (k *rndChecker) readinessOff() {
	p, evs, shutdown, phaseAt, reachedRunning := k.p, k.evs, k.shutdown, k.phaseAt, k.running
	fail := k.fail
	// 9. Readiness off before any Stop; the drain delay only where there is
	// something to drain.
	firstStop := -1
	for i, ev := range evs {
		if ev.Kind == EventStopping {
			firstStop = i
			break
		}
	}
	if firstStop >= 0 {
		if sp, ok := phaseAt[PhaseStopping]; !ok || sp > firstStop {
			fail("EventStopping before the stop phase")
		}
		if dr, ok := phaseAt[PhaseDraining]; reachedRunning && (!ok || dr > firstStop) {
			fail("the Group was running, and a component stopped before it turned not-ready")
		}
	}
	if dr, ok := phaseAt[PhaseDraining]; ok {
		drainers := false
		for _, c := range p.comps {
			drainers = drainers || c.drainer
		}
		d := evs[dr]
		if dr != shutdown+1 {
			fail("the drain did not begin as the shutdown did")
		}
		delay := d.Deadline.Sub(d.Time)
		decided := evs[dr-1].Time
		switch {
		case !drainers && delay > 0:
			fail("a drain delay of %v, with no Drainer", delay)
		case drainers && (delay > p.drain || d.Deadline.Before(decided.Add(p.drain-rndSlop))):
			fail("a drain delay of %v; want %v", delay, p.drain)
		}
		if sp, ok := phaseAt[PhaseStopping]; ok && evs[sp].Time.Before(d.Deadline.Add(-rndSlop)) {
			fail("the stop began %v before the end of the drain delay", d.Deadline.Sub(evs[sp].Time))
		}
	}
}

// budget checks rule 4: Run returns within the budget.
func (k *rndChecker) budget() {
	p, res, deadline, reachedRunning := k.p, k.res, k.deadline, k.running
	fail := k.fail
	// 4. Run returns within the budget.
	if late := res.end.Sub(deadline); late > rndSlack {
		fail("Run returned %v after the shutdown deadline (budget %v)", late, p.budget)
	}
	if p.end == rndStopCall && reachedRunning {
		if res.stopErr != nil || res.stopPhase != PhaseStopped {
			fail("Stop returned %v in phase %v; want nil, once the Group stopped", res.stopErr, res.stopPhase)
		}
	}
}

// errors checks rule 6: each error a *ComponentError explained by a fault
// that happened or an abandonment, each fault in the error once, the cause,
// ErrTimeout and the exit code.
func (k *rndChecker) errors() {
	t, p, res, evs, at, index, shutdown, phaseAt, sh := k.t, k.p, k.res, k.evs, k.at, k.index, k.shutdown, k.phaseAt, k.sh
	fail := k.fail
	// 6. Errors: each a *ComponentError, explained by a fault that fired or
	// an abandonment; each fault that fired is in the error once.
	comps, others := rndLeaves(res.err)
	if len(others) > 0 {
		fail("errors that are not *ComponentError: %v", others)
	}
	type site struct {
		ci   int
		what string
	}
	seen := map[site]*ComponentError{}
	for _, ce := range comps {
		ci, ok := index[ce.Component]
		if !ok {
			fail("error for an unknown component: %v", ce)
			continue
		}
		c, a := p.comps[ci], at[ci]
		// The phase of a Start's failure: starting before it was ready
		// (stopping if its Stop crossed it), running before the shutdown,
		// else the Group's phase when it returned.
		startPhase := func() bool {
			if a.exited < 0 {
				return false
			}
			switch {
			case !rndBefore(a.ready, a.exited):
				return ce.Phase == PhaseStarting || ce.Phase == PhaseStopping && rndBefore(a.stopping, a.exited)
			case a.exited < shutdown:
				return ce.Phase == PhaseRunning
			}
			return ce.Phase == evs[a.exited].Phase
		}
		var pe *PanicError
		what, ok := "", false
		switch {
		case errors.As(ce, &pe):
			switch pe.Value {
			case c.panics[0]:
				what, ok = "ready panic", c.readyFired.Load() && startPhase()
			case c.panics[1]:
				what, ok = "start panic", c.startFired.Load() && startPhase()
			case c.panics[2]:
				what, ok = "stop panic", c.stopFired.Load() && ce.Phase == PhaseStopping
			case c.panics[3]:
				what, ok = "drain panic", c.drainFired.Load() && ce.Phase == PhaseDraining
			}
			ok = ok && len(pe.Stack) > 0
		case errors.Is(ce, c.startErr):
			what, ok = "start failure", c.startFired.Load() && startPhase()
		case errors.Is(ce, c.stopErr):
			what, ok = "stop failure", c.stopFired.Load() && ce.Phase == PhaseStopping
		case errors.Is(ce, context.DeadlineExceeded):
			what, ok = "slow stop", c.stopF == stSlow && c.stopFired.Load() && ce.Phase == PhaseStopping && errors.Is(ce, ErrTimeout)
		case errors.Is(ce, ErrExited):
			what, ok = "exit", (c.start == sfNil || c.start == sfNilBefore) && c.startFired.Load() && startPhase()
			if ok && a.exited > shutdown && rndBefore(a.ready, a.exited) {
				fail("%s returned nil after the shutdown began, yet its error says it exited: %v", c.name, ce)
			}
		case errors.Is(ce, ErrTimeout) && ce.Phase == PhaseStarting:
			what, ok = "start timeout", a.ready < 0 || a.ready > shutdown
			k.startTimeout = true
			if ce != sh.Err {
				fail("a start timeout, not the shutdown's cause: %v", ce)
			}
			if st, in := phaseAt[PhaseStarting]; !in || sh.Time.Before(evs[st].Time.Add(p.startTimeout-rndSlop)) {
				fail("the start timed out before the start timeout %v", p.startTimeout)
			}
		case errors.Is(ce, ErrTimeout) && ce.Phase == PhaseStopping:
			what, ok = "abandoned", a.abandonStop >= 0 && evs[a.abandonStop].Err == error(ce)
			if ok && (c.startHung.Load() || c.readyHung.Load() || c.stopHung.Load()) && !strings.Contains(string(ce.Stacks), "rndComp") {
				fail("%s hangs, but its abandonment's Stacks do not show where: %q", c.name, ce.Stacks)
			}
		case errors.Is(ce, ErrTimeout) && ce.Phase == PhaseDraining:
			what, ok = "drain abandoned", a.abandonDrain >= 0 && evs[a.abandonDrain].Err == error(ce)
		}
		if !ok {
			fail("unexplained error (%s): %v", what, ce)
			continue
		}
		if prev := seen[site{ci, what}]; prev != nil {
			fail("%s: %s reported twice: %v; %v", c.name, what, prev, ce)
		}
		seen[site{ci, what}] = ce
	}
	for ci, c := range p.comps {
		a := at[ci]
		need := func(what string, when bool) {
			t.Helper()
			if when && seen[site{ci, what}] == nil {
				fail("%s: %s, but Run's error does not say so", c.name, what)
			}
		}
		stopAb := a.abandonStop >= 0 // what it reports after that is not heard
		need("abandoned", stopAb)
		need("drain abandoned", a.abandonDrain >= 0)
		need("ready panic", c.readyFired.Load() && !stopAb)
		need("start panic", c.startFired.Load() && (c.start == sfPanic || c.start == sfPanicBefore) && !stopAb)
		need("start failure", c.startFired.Load() && (c.start == sfFail || c.start == sfFailBefore) && !stopAb)
		need("stop panic", c.stopFired.Load() && c.stopF == stPanic && !stopAb)
		need("stop failure", c.stopFired.Load() && c.stopF == stFail && !stopAb)
		need("slow stop", c.stopFired.Load() && c.stopF == stSlow && !stopAb)
		need("drain panic", c.drainFired.Load() && a.abandonDrain < 0)
		if c.startFired.Load() && (c.start == sfNil || c.start == sfNilBefore) && !stopAb {
			// A nil return is a failure while nothing asked the component to
			// end: before the shutdown, or before it was ready and stopped.
			need("exit", a.exited < shutdown || !rndBefore(a.ready, a.exited) && !rndBefore(a.stopping, a.exited))
		}
	}
	var ce *ComponentError
	if len(comps) > 0 && !errors.As(res.err, &ce) {
		fail("errors.As(err, *ComponentError) is false")
	}

	// The cause.
	switch cause := res.cause; {
	case cause == errRndShutdown:
		if p.end != rndShutdown && p.end != rndShutdownAt {
			fail("cause %v, though the driver did not call Shutdown", cause)
		}
	case errors.Is(cause, context.Canceled):
		if p.end == rndShutdown || p.end == rndShutdownAt || p.end == rndStopCall {
			fail("cause %v, though the driver did not cancel", cause)
		}
	case errors.As(cause, &ce):
		found := false
		for _, x := range comps {
			found = found || x == ce
		}
		if !found {
			fail("the cause %v is not in Run's error", cause)
		}
	default:
		if p.end != rndStopCall {
			fail("cause %v", cause)
		}
	}

	// 6. ErrTimeout iff something was abandoned, the start timed out, or a
	// Stop failed after its time ran out; the exit code.
	code := ExitCode(res.err)
	timedOut := errors.Is(res.err, ErrTimeout)
	if timedOut != (k.abandoned || k.startTimeout || k.timeoutStop) {
		fail("errors.Is(err, ErrTimeout) = %t; abandoned %t, start timeout %t, Stop failed late %t", timedOut, k.abandoned, k.startTimeout, k.timeoutStop)
	}
	switch {
	case errors.Is(res.err, ErrForced):
		fail("ErrForced without signals")
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
}

// rndReserves returns, for each component, the time that the documented
// budget rule keeps inside the budget for the components that stop after it:
// the longest chain, through what it needs, of their own times (each its
// StopTimeout, or a tenth of the budget), at most half the budget.
func rndReserves(p *rndPlan) []time.Duration {
	res := make([]time.Duration, len(p.comps))
	for i, c := range p.comps { // what it needs was added before it
		var r time.Duration
		for _, d := range c.needs {
			own := p.comps[d].stopTimeout
			if own == 0 {
				own = p.budget / 10
			}
			r = max(r, own+res[d])
		}
		res[i] = r
	}
	// Scaled down in proportion when the longest is over half the budget,
	// exactly as the engine does.
	longest := slices.Max(append([]time.Duration{0}, res...))
	if half := p.budget / 2; longest > half {
		for i := range res {
			res[i] = time.Duration(float64(res[i]) * float64(half) / float64(longest))
		}
	}
	return res
}

// rndDump formats the events of a run, one a line.
func rndDump(evs []rndEvent, began time.Time, prefix string) string {
	var b strings.Builder
	for _, ev := range evs {
		extra := ""
		if !ev.Deadline.IsZero() {
			extra = fmt.Sprintf(" deadline=+%v", ev.Deadline.Sub(began).Round(100*time.Microsecond))
		}
		fmt.Fprintf(&b, "\n  %3d +%-9v %-10s %-8s %-4s%s %v", ev.seq, ev.Time.Sub(began).Round(100*time.Microsecond),
			ev.Kind, ev.Phase, strings.TrimPrefix(ev.Component, prefix), extra, ev.Err)
	}
	return b.String()
}

// rndPrefix returns the prefix of the component names of the plan's run.
func rndPrefix(p *rndPlan) string {
	if len(p.comps) == 0 {
		return ""
	}
	n := p.comps[0].name
	return n[:strings.IndexByte(n, '-')+1]
}

// rndSeeds is how many seeds TestRandom runs, and how many at once: most
// runs wait on timers, so they overlap well even on two cores.
const (
	rndSeeds    = 300
	rndParallel = 8
)

func TestRandom(t *testing.T) {
	var tally rndTally
	rndEachSeed(t, rndSeeds, 0x9e3779b97f4a7c15, func(t *testing.T, r *rand.Rand) {
		p := rndGenerate(r)
		res := rndRun(t, p)
		rndCheck(t, p, res)
		tally.add(p, res, t.Failed())
	})
	t.Log(tally.String())
}

// rndEachSeed runs fn as a subtest for seeds 0..n-1, rndParallel at a time,
// each with a generator seeded by (seed, stream), and returns when all have
// ended.
func rndEachSeed(t *testing.T, n int, stream uint64, fn func(t *testing.T, r *rand.Rand)) {
	sem := make(chan struct{}, rndParallel)
	var wg sync.WaitGroup
	for seed := range uint64(n) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				fn(t, rand.New(rand.NewPCG(seed, stream)))
			})
		})
	}
	wg.Wait()
}

// rndTally sums up what the schedules of TestRandom did.
type rndTally struct {
	mu                                    sync.Mutex
	runs, clean, running, faults, abandon int
	timeouts, startTimeouts               int
	crossed                               int           // Stops that crossed a failure before ready
	afterAb, afterAbShort                 int           // stops right after an abandoned dependent; with < rndSched
	late                                  time.Duration // the latest Run returned after its deadline
}

func (y *rndTally) add(p *rndPlan, res *rndResult, failed bool) {
	y.mu.Lock()
	defer y.mu.Unlock()
	y.runs++
	if !failed {
		y.clean++
	}
	for _, ev := range res.events {
		switch {
		case ev.Kind == EventPhase && ev.Phase == PhaseRunning:
			y.running++
		case ev.Kind == EventAbandoned:
			y.abandon++
		case ev.Kind == EventShutdown:
			y.late = max(y.late, res.end.Sub(ev.Deadline))
			if errors.Is(ev.Err, ErrTimeout) {
				y.startTimeouts++
			}
		}
	}
	for _, c := range p.comps {
		for _, f := range []*atomic.Bool{&c.readyFired, &c.startFired, &c.stopFired, &c.drainFired, &c.startHung, &c.readyHung, &c.stopHung, &c.drainHung} {
			if f.Load() {
				y.faults++
			}
		}
	}
	if errors.Is(res.err, ErrTimeout) {
		y.timeouts++
	}
	for _, c := range p.comps {
		if c.startFired.Load() && c.start.before() && c.stopCalls.Load() > 0 {
			y.crossed++
		}
	}
	// A stop that an abandonment let begin: the event after an EventAbandoned
	// in the stop phase.
	for i, ev := range res.events {
		if ev.Kind == EventAbandoned && ev.Phase == PhaseStopping && i+1 < len(res.events) && res.events[i+1].Kind == EventStopping {
			next := res.events[i+1]
			y.afterAb++
			if next.Deadline.Sub(next.Time) < rndSched {
				y.afterAbShort++
			}
		}
	}
}

func (y *rndTally) String() string {
	y.mu.Lock()
	defer y.mu.Unlock()
	return fmt.Sprintf("%d schedules, %d clean; %d reached running; %d faults happened, %d abandonments, %d runs with ErrTimeout (%d start timeouts); %d Stops crossed a failure before ready; %d stops began at an abandonment, %d of them with less than %v to stop; Run returned at most %v after its deadline",
		y.runs, y.clean, y.running, y.faults, y.abandon, y.timeouts, y.startTimeouts, y.crossed, y.afterAb, y.afterAbShort, rndSched, y.late)
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
// as Shutdown does, so the shutdown budget bounds it whatever Stop's ctx is.
// (The engine once used Stop's ctx as the stop context: with
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
	limit := time.NewTimer(budget + rndSlack)
	defer limit.Stop()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("Run: %v; want the hanging Stop named, with ErrTimeout", err)
		}
	case <-limit.C:
		t.Errorf("Run did not return within %v of Stop(context.Background()), shutdown timeout %v", budget+rndSlack, budget)
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
// Group saw the channel closed (which happens nearly every time here: the
// Start goroutine runs on until it returns); and its failure is reported
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
