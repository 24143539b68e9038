package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The randomized test of supervision (issue 11): random Groups whose
// components have restart policies (small backoffs, one to three restarts
// in a long window) and may be Optional, and whose instances fail a few
// times, then run (or fail for good). A component with a policy is given a
// fresh instance for each start through RestartPolicy.New, so every check
// that TestRandom makes per component is made here per instance, that is
// per start. The rules checked (supChecker, one method each):
//  1. a component's first start comes only once all it needs was ready, at
//     once; a restart (Attempt > 0) only before the shutdown began, after an
//     EventRestarting with the same Attempt, at least its Delay after it,
//     and the Delay is the policy's (doubling from Backoff to MaxBackoff,
//     less up to a fifth); never more restarts than MaxRestarts;
//  2. every instance whose Start was called has Start called once; Stop
//     exactly once if it did not fail before it was ready, never otherwise;
//     each Stop announced by EventStopping and settled (stopped or
//     abandoned) once;
//  3. a stop in the shutdown comes only once every component that needs it
//     has settled (no instance of it active, none started after), and its
//     deadline is inside the budget and its StopTimeout; it is abandoned
//     only if it hangs, and at its deadline;
//  4. Run returns within the budget; no event after it; no goroutine of the
//     run is left once the hanging Stops are released;
//  5. an optional component that gives up (EventGaveUp) does not shut the
//     Group down, and neither its failures nor its give-up are in Run's
//     error (what it does once the shutdown began is, as for any
//     component); a critical component that fails once more than
//     MaxRestarts allows shuts the Group down with a *GaveUpError naming it,
//     which is the shutdown's cause and in Run's error; one without a
//     policy shuts it down with its failure; only optional components give
//     up;
//  6. every error in Run's error is a *ComponentError explained by a fault
//     or an abandonment, and each fault that must be reported is, once;
//     ErrTimeout iff something was abandoned; the exit code matches.

// supFail is how one instance of a component fails.
type supFail int

const (
	supHealthy supFail = iota // ready, then runs until Stop
	supBefore                 // (Readier) returns an error before it is ready
	supErr                    // ready, then returns an error
	supNil                    // ready, then returns nil
	supPanic                  // ready, then panics
	supFails
)

var supFailNames = [...]string{"healthy", "failbefore", "fail", "nil", "panic"}

// supStop is what an instance's Stop does when it is called in the
// shutdown (a Stop for a restart always stops cleanly, so that Run's error
// holds only what the shutdown met).
type supStop int

const (
	supStopNone supStop = iota
	supStopFail
	supStopHang // ignores its ctx until the test releases it
	supStops
)

var supStopNames = [...]string{"", "stopfail", "stophang"}

const (
	supBudget = 400 * time.Millisecond
	supSeeds  = 300
	// supForever is the fail count of a component that fails at
	// every start.
	supForever = -1
)

// supComp is a generated component: its plan, and its instances.
type supComp struct {
	deps        int
	afterIdx    []int
	needs       []int
	readier     bool
	optional    bool
	policy      *RestartPolicy // without New; nil: no policy
	fails       int            // how many starts fail before one runs; supForever
	modes       []supFail      // the failures, one per failing start (cycled)
	stopF       supStop
	stopTimeout time.Duration

	name    string
	seq     *atomic.Int64
	release chan struct{}
	over    *atomic.Bool

	mu       sync.Mutex
	insts    []*supInst
	lateNew  atomic.Bool // New called after the shutdown began
	shutSeen *atomic.Bool
}

// mode returns how start k fails.
func (c *supComp) mode(k int) supFail {
	if c.fails == supForever || k < c.fails {
		return c.modes[k%len(c.modes)]
	}
	return supHealthy
}

// newInst makes the instance for start k.
func (c *supComp) newInst() Component {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := len(c.insts)
	in := &supInst{c: c, k: k, fail: c.mode(k),
		ready: make(chan struct{}), quit: make(chan struct{}),
		startDone: make(chan struct{}), stopDone: make(chan struct{}),
		startErr: fmt.Errorf("injected Start failure of %s#%d", c.name, k),
		stopErr:  fmt.Errorf("injected Stop failure of %s#%d", c.name, k),
		panicV:   fmt.Sprintf("injected Start panic of %s#%d", c.name, k),
	}
	c.insts = append(c.insts, in)
	if c.readier {
		return supRdy{in}
	}
	return in
}

func (c *supComp) inst(k int) *supInst {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k < 0 || k >= len(c.insts) {
		return nil
	}
	return c.insts[k]
}

func (c *supComp) all() []*supInst {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*supInst(nil), c.insts...)
}

// supInst is one instance: one start of a component.
type supInst struct {
	c        *supComp
	k        int
	fail     supFail
	startErr error
	stopErr  error
	panicV   string

	ready, quit, startDone, stopDone chan struct{}
	quitOnce                         sync.Once

	startCalls, stopCalls atomic.Int32
	startSeq, stopSeq     atomic.Int64
	fired                 atomic.Bool // its failure happened
	lateStart             atomic.Bool // Start called after Run returned
	inShutdown            atomic.Bool // its EventStopping came after EventShutdown
	stopFired, stopHung   atomic.Bool
}

type supRdy struct{ *supInst }

func (i supRdy) Ready() <-chan struct{} { return i.ready }

func (i *supInst) Start(ctx context.Context) error {
	if i.startCalls.Add(1) > 1 {
		return errors.New("Start called twice on one instance") // reported by the checker
	}
	i.startSeq.Store(i.c.seq.Add(1))
	if i.c.over.Load() {
		i.lateStart.Store(true)
	}
	defer close(i.startDone)
	select {
	case <-i.quit:
		return nil
	default:
	}
	if i.fail == supBefore {
		i.fired.Store(true)
		return i.startErr
	}
	close(i.ready)
	switch i.fail {
	case supErr:
		i.fired.Store(true)
		return i.startErr
	case supNil:
		i.fired.Store(true)
		return nil
	case supPanic:
		i.fired.Store(true)
		panic(i.panicV)
	}
	select {
	case <-i.quit:
	case <-ctx.Done():
	}
	return nil
}

func (i *supInst) Stop(ctx context.Context) error {
	if i.stopCalls.Add(1) > 1 {
		return errors.New("Stop called twice on one instance") // reported by the checker
	}
	i.stopSeq.Store(i.c.seq.Add(1))
	defer close(i.stopDone)
	i.quitOnce.Do(func() { close(i.quit) })
	if i.inShutdown.Load() {
		switch i.c.stopF {
		case supStopFail:
			i.stopFired.Store(true)
			return i.stopErr
		case supStopHang:
			i.stopHung.Store(true)
			<-i.c.release
			return nil
		}
	}
	select {
	case <-i.startDone:
	case <-ctx.Done():
	}
	return nil
}

// supPlan is what the generator made.
type supPlan struct {
	comps []*supComp
	at    int  // the observer calls Shutdown at the at-th event (0: never)
	stop  bool // once every component has settled, Shutdown (else cancel)
}

func (p *supPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "at=%d shutdown=%t:", p.at, p.stop)
	for i, c := range p.comps {
		fmt.Fprintf(&b, "\n  c%d needs=%v", i, c.needs)
		if c.deps == depNone {
			b.WriteString(" After()")
		}
		if c.readier {
			b.WriteString(" readier")
		}
		if c.optional {
			b.WriteString(" optional")
		}
		if c.policy != nil {
			fmt.Fprintf(&b, " restart(backoff=%v max=%v n=%d)", c.policy.Backoff, c.policy.MaxBackoff, c.policy.MaxRestarts)
		}
		if c.fails != 0 {
			var ms []string
			for _, m := range c.modes {
				ms = append(ms, supFailNames[m])
			}
			fmt.Fprintf(&b, " fails=%d %v", c.fails, ms)
		}
		if c.stopF != supStopNone {
			b.WriteString(" " + supStopNames[c.stopF])
		}
		if c.stopTimeout > 0 {
			fmt.Fprintf(&b, " StopTimeout(%v)", c.stopTimeout)
		}
	}
	return b.String()
}

// supGenerate builds a random plan.
func supGenerate(r *rand.Rand) *supPlan {
	p := &supPlan{}
	n := 1 + r.IntN(6)
	for i := range n {
		c := &supComp{readier: r.IntN(2) == 0, optional: r.IntN(3) == 0}
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
				c.afterIdx = append(c.afterIdx, j)
				if !rndContains(c.needs, j) {
					c.needs = append(c.needs, j)
				}
			}
		}
		if r.IntN(4) != 0 {
			b := time.Duration(r.IntN(6)) * time.Millisecond
			c.policy = &RestartPolicy{Backoff: b, MaxBackoff: b * time.Duration(1+r.IntN(3)),
				MaxRestarts: 1 + r.IntN(3), Window: time.Minute}
		}
		// Most fail a few times, within the policy or one more; some fail
		// for good; some never.
		switch x := r.IntN(6); {
		case x == 0:
			c.fails = 0
		case x == 1:
			c.fails = supForever
		default:
			limit := 1
			if c.policy != nil {
				limit = c.policy.MaxRestarts + 1
			}
			c.fails = 1 + r.IntN(limit)
		}
		for range 1 + r.IntN(3) {
			for {
				m := supFail(1 + r.IntN(int(supFails)-1))
				if m != supBefore || c.readier {
					c.modes = append(c.modes, m)
					break
				}
			}
		}
		c.stopF = supStop(rndPick(r, []int{14, 2, 1}))
		if r.IntN(4) == 0 {
			c.stopTimeout = supBudget/10 + time.Duration(r.IntN(4))*supBudget/10
		}
		p.comps = append(p.comps, c)
	}
	if r.IntN(2) == 0 {
		p.at = 1 + r.IntN(8*n)
	}
	p.stop = r.IntN(2) == 0
	return p
}

// supResult is what a run recorded.
type supResult struct {
	err        error
	cause      error
	phase      Phase
	status     []ComponentStatus
	began, end time.Time
	events     []rndEvent
	late       []rndEvent
	// For each instance, at the moment Run returned: its Start or Stop had
	// begun and not returned.
	open map[*supInst]bool
}

func supRun(t testing.TB, p *supPlan) *supResult {
	var (
		seq, nev  atomic.Int64
		over      atomic.Bool
		shutSeen  atomic.Bool
		release   = make(chan struct{})
		mu        sync.Mutex
		res       = &supResult{open: map[*supInst]bool{}}
		running   = make(chan struct{})
		shut      = make(chan struct{})
		quiet     = make(chan struct{})
		onceRun   sync.Once
		onceShut  sync.Once
		onceQuiet sync.Once
		byName    = map[string]*supComp{}
		done      = map[string]bool{}
		prefix    = fmt.Sprintf("s%d-", rndRunID.Add(1))
		g         *Group
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, c := range p.comps {
		c.name = fmt.Sprintf("%sc%d", prefix, i)
		c.seq, c.release, c.over, c.shutSeen = &seq, release, &over, &shutSeen
		byName[c.name] = c
	}
	isRunning := false
	settled := func(name string) { // on the Group's goroutine, under mu
		done[name] = true
		if isRunning && len(done) == len(p.comps) {
			onceQuiet.Do(func() { close(quiet) })
		}
	}
	observe := func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		if over.Load() {
			res.late = append(res.late, rndEvent{ev, seq.Add(1)})
			return
		}
		res.events = append(res.events, rndEvent{ev, seq.Add(1)})
		c := byName[ev.Component]
		switch ev.Kind {
		case EventShutdown:
			shutSeen.Store(true)
			onceShut.Do(func() { close(shut) })
		case EventPhase:
			if ev.Phase == PhaseRunning {
				isRunning = true
				onceRun.Do(func() { close(running) })
				if len(done) == len(p.comps) {
					onceQuiet.Do(func() { close(quiet) })
				}
			}
		case EventStopping:
			if c != nil && shutSeen.Load() {
				if in := c.inst(len(c.all()) - 1); in != nil {
					in.inShutdown.Store(true)
				}
			}
		case EventReady:
			if c != nil && c.mode(ev.Attempt) == supHealthy {
				settled(c.name)
			}
		case EventGaveUp:
			if c != nil {
				settled(c.name)
			}
		}
		if nev.Add(1) == int64(p.at) {
			g.Shutdown(errRndShutdown)
		}
	}
	g = New(WithSignals(), WithLogger(nil), WithShutdownTimeout(supBudget), WithDrainDelay(0),
		WithStartTimeout(time.Minute), WithObserver(observe))
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
		if c.policy != nil {
			pol := *c.policy
			pol.New = func() Component {
				if c.shutSeen.Load() {
					c.lateNew.Store(true)
				}
				return c.newInst()
			}
			opts = append(opts, Restart(pol))
		}
		if c.optional {
			opts = append(opts, Optional())
		}
		if c.stopTimeout > 0 {
			opts = append(opts, StopTimeout(c.stopTimeout))
		}
		g.Add(c.name, c.newInst(), opts...)
	}
	errc := make(chan error, 1)
	res.began = time.Now()
	go func() { errc <- g.Run(ctx) }()
	failsafe := time.NewTimer(rndFailsafe)
	defer failsafe.Stop()
	select {
	case <-quiet:
		if p.stop {
			g.Shutdown(errRndShutdown)
		} else {
			cancel()
		}
	case <-shut:
	case <-failsafe.C:
	}
	select {
	case res.err = <-errc:
		over.Store(true)
	case <-failsafe.C:
		mu.Lock()
		evs := append([]rndEvent(nil), res.events...)
		mu.Unlock()
		t.Fatalf("Run did not return within %v\nplan: %v\nevents:%s", rndFailsafe, p, rndDump(evs, res.began, prefix))
	}
	res.end = time.Now()
	res.cause, res.phase, res.status = g.Cause(), g.Phase(), g.Status()
	for _, c := range p.comps {
		for _, in := range c.all() {
			res.open[in] = in.startCalls.Load() > 0 && !rndIsClosed(in.startDone) ||
				in.stopCalls.Load() > 0 && !rndIsClosed(in.stopDone)
		}
	}
	close(release)
	rndWaitGone(t, prefix, failsafe.C, nil)
	mu.Lock()
	res.events = append([]rndEvent(nil), res.events...)
	res.late = append([]rndEvent(nil), res.late...)
	mu.Unlock()
	return res
}

// supSeg is where one instance's events are (-1: none).
type supSeg struct {
	starting, ready, exited, stopping, stopped, abandoned, restarting, gaveUp int
}

type supChecker struct {
	t        testing.TB
	p        *supPlan
	res      *supResult
	evs      []rndEvent
	index    map[string]int
	segs     [][]supSeg
	gaveUp   []int // a component's EventGaveUp, -1 if none
	shutdown int
	sh       Event
	phaseAt  map[Phase]int

	abandoned bool
}

func (k *supChecker) fail(format string, args ...any) {
	k.t.Helper()
	k.t.Errorf(format, args...)
}

func supCheck(t testing.TB, p *supPlan, res *supResult) {
	t.Helper()
	k := &supChecker{t: t, p: p, res: res, evs: res.events, index: map[string]int{}, shutdown: -1, phaseAt: map[Phase]int{}}
	for i, c := range p.comps {
		k.index[c.name] = i
	}
	defer func() {
		if t.Failed() {
			t.Logf("plan: %v\nRun took %v; err: %v\nevents:%s", p, res.end.Sub(res.began), res.err, supDump(res.events, res.began, p))
		}
	}()
	k.group()
	k.locate()
	for ci := range p.comps {
		k.starts(ci)
		k.instances(ci)
		k.stops(ci)
	}
	k.errors()
}

func supDump(evs []rndEvent, began time.Time, p *supPlan) string {
	prefix := ""
	if len(p.comps) > 0 {
		prefix = p.comps[0].name[:strings.IndexByte(p.comps[0].name, '-')+1]
	}
	var b strings.Builder
	for _, ev := range evs {
		extra := ""
		if ev.Kind == EventStarting || ev.Kind == EventRestarting {
			extra = fmt.Sprintf(" attempt=%d", ev.Attempt)
		}
		if ev.Kind == EventRestarting {
			extra += fmt.Sprintf(" delay=%v", ev.Delay)
		}
		fmt.Fprintf(&b, "\n  %3d +%-9v %-10s %-8s %-4s%s %v", ev.seq, ev.Time.Sub(began).Round(100*time.Microsecond),
			ev.Kind, ev.Phase, strings.TrimPrefix(ev.Component, prefix), extra, ev.Err)
	}
	return b.String()
}

// group checks the Group's events: phases in order, one shutdown, Run
// within the budget, nothing after Run.
func (k *supChecker) group() {
	last := PhaseIdle
	for i, ev := range k.evs {
		switch ev.Kind {
		case EventPhase:
			if ev.Phase <= last {
				k.fail("phase %v after %v", ev.Phase, last)
			}
			last = ev.Phase
			k.phaseAt[ev.Phase] = i
		case EventShutdown:
			if k.shutdown >= 0 {
				k.fail("second EventShutdown")
			}
			k.shutdown = i
		case EventForced:
			k.fail("EventForced without signals")
		}
		if _, ok := k.index[ev.Component]; ev.Component != "" && !ok {
			k.fail("event %v for an unknown component %q", ev.Kind, ev.Component)
		}
	}
	if len(k.res.late) > 0 {
		k.fail("%d events after Run returned, the first %v %s", len(k.res.late), k.res.late[0].Kind, k.res.late[0].Component)
	}
	if last != PhaseStopped || k.res.phase != PhaseStopped {
		k.fail("last phase %v, Phase() %v; want stopped", last, k.res.phase)
	}
	if k.shutdown < 0 {
		k.t.Fatalf("no EventShutdown")
	}
	k.sh = k.evs[k.shutdown].Event
	if k.res.cause == nil || k.res.cause != k.sh.Err {
		k.fail("Cause() = %v, EventShutdown.Err = %v; want the same", k.res.cause, k.sh.Err)
	}
	if late := k.res.end.Sub(k.sh.Deadline); late > rndSlack {
		k.fail("Run returned %v after the shutdown deadline", late)
	}
	if k.sh.Deadline.Sub(k.sh.Time) > supBudget {
		k.fail("shutdown deadline %v after the event; budget %v", k.sh.Deadline.Sub(k.sh.Time), supBudget)
	}
}

// locate splits each component's events into its instances: each
// EventStarting begins one.
func (k *supChecker) locate() {
	k.segs = make([][]supSeg, len(k.p.comps))
	k.gaveUp = make([]int, len(k.p.comps))
	for i := range k.gaveUp {
		k.gaveUp[i] = -1
	}
	for i, ev := range k.evs {
		ci, ok := k.index[ev.Component]
		if !ok {
			continue
		}
		c := k.p.comps[ci]
		if ev.Kind == EventStarting {
			k.segs[ci] = append(k.segs[ci], supSeg{i, -1, -1, -1, -1, -1, -1, -1})
			continue
		}
		if ev.Kind == EventGaveUp {
			if k.gaveUp[ci] >= 0 {
				k.fail("%s: a second EventGaveUp", c.name)
			}
			k.gaveUp[ci] = i
		}
		ss := k.segs[ci]
		if len(ss) == 0 {
			if ev.Kind != EventGaveUp {
				k.fail("%s: %v before any EventStarting", c.name, ev.Kind)
			}
			continue
		}
		s := &ss[len(ss)-1]
		var slot *int
		switch ev.Kind {
		case EventReady:
			slot = &s.ready
		case EventExited:
			slot = &s.exited
		case EventStopping:
			slot = &s.stopping
		case EventStopped:
			slot = &s.stopped
		case EventAbandoned:
			slot = &s.abandoned
		case EventRestarting:
			slot = &s.restarting
		case EventGaveUp:
			slot = &s.gaveUp
		}
		if slot == nil {
			continue
		}
		if *slot >= 0 {
			k.fail("%s#%d: a second %v", c.name, len(ss)-1, ev.Kind)
			continue
		}
		*slot = i
	}
}

// failedBefore reports whether instance s's Start failed before it was
// ready (and was not being stopped).
func failedBefore(s supSeg) bool {
	return s.exited >= 0 && !rndBefore(s.ready, s.exited) && !rndBefore(s.stopping, s.exited)
}

// starts checks rule 1.
func (k *supChecker) starts(ci int) {
	c, segs, evs := k.p.comps[ci], k.segs[ci], k.evs
	if len(segs) == 0 {
		return
	}
	// The first start: once all it needs was ready, at once.
	first := segs[0].starting
	from, ok := k.phaseAt[PhaseStarting]
	if !ok || first > k.shutdown {
		k.fail("%s: first start outside the start phase or after the shutdown", c.name)
	}
	for _, d := range c.needs {
		r := -1
		for _, s := range k.segs[d] {
			if s.ready >= 0 {
				r = s.ready
				break
			}
		}
		if !rndBefore(r, first) {
			k.fail("%s started before %s, which it needs, was ready", c.name, k.p.comps[d].name)
		}
		from = max(from, r)
	}
	for j := from + 1; j < first; j++ {
		if evs[j].Kind != EventStarting {
			k.fail("%s started late: %v %s came between what it waited for and its start", c.name, evs[j].Kind, evs[j].Component)
			break
		}
	}
	if c.lateNew.Load() {
		k.fail("%s: RestartPolicy.New called after the shutdown began", c.name)
	}
	if c.policy == nil && len(segs) > 1 {
		k.fail("%s: started %d times without a restart policy", c.name, len(segs))
	}
	if c.policy != nil && len(segs)-1 > c.policy.MaxRestarts {
		k.fail("%s: %d restarts; MaxRestarts %d", c.name, len(segs)-1, c.policy.MaxRestarts)
	}
	for n, s := range segs {
		ev := evs[s.starting]
		if ev.Attempt != n {
			k.fail("%s: start %d has Attempt %d", c.name, n, ev.Attempt)
		}
		if n == 0 {
			continue
		}
		if s.starting > k.shutdown {
			k.fail("%s: restart %d after the shutdown began", c.name, n)
		}
		prev := segs[n-1]
		if prev.restarting < 0 {
			k.fail("%s: restart %d without EventRestarting", c.name, n)
			continue
		}
		rs := evs[prev.restarting]
		if rs.Attempt != n {
			k.fail("%s: EventRestarting Attempt %d before start %d", c.name, rs.Attempt, n)
		}
		if waited := ev.Time.Sub(rs.Time); waited < rs.Delay-rndSlop {
			k.fail("%s: restart %d %v after EventRestarting; want at least its Delay %v", c.name, n, waited, rs.Delay)
		}
	}
	// Every EventRestarting: after a failure, before the shutdown, with
	// the policy's delay; a restart follows unless the shutdown came first.
	for n, s := range segs {
		if s.restarting < 0 {
			continue
		}
		rs := evs[s.restarting]
		if c.policy == nil {
			k.fail("%s: EventRestarting without a policy", c.name)
			continue
		}
		if s.exited < 0 || s.exited > s.restarting || s.restarting > k.shutdown {
			k.fail("%s#%d: EventRestarting not after its exit and before the shutdown", c.name, n)
		}
		if s.stopping >= 0 && !rndBefore(s.stopped, s.restarting) {
			k.fail("%s#%d: EventRestarting before its Stop ended", c.name, n)
		}
		want := c.policy.Backoff
		for range n {
			if want >= c.policy.MaxBackoff {
				break
			}
			want *= 2
		}
		want = min(want, c.policy.MaxBackoff)
		if rs.Delay > want || rs.Delay < want-want/5 {
			k.fail("%s: restart %d: Delay %v; want %v less at most a fifth", c.name, n+1, rs.Delay, want)
		}
		if n+1 >= len(segs) && rs.Time.Add(rs.Delay+rndSlack).Before(k.evs[k.shutdown].Time) {
			k.fail("%s: EventRestarting %d, never started again, though the shutdown came %v after it", c.name, n+1, k.evs[k.shutdown].Time.Sub(rs.Time))
		}
	}
}

// instances checks rule 2, per instance.
func (k *supChecker) instances(ci int) {
	c, segs, evs := k.p.comps[ci], k.segs[ci], k.evs
	insts := c.all()
	if len(insts) != max(1, len(segs)) {
		k.fail("%s: %d instances made, %d starts", c.name, len(insts), len(segs))
		return
	}
	if len(segs) == 0 {
		if in := insts[0]; in.startCalls.Load()+in.stopCalls.Load() != 0 {
			k.fail("%s never started, but Start×%d Stop×%d", c.name, in.startCalls.Load(), in.stopCalls.Load())
		}
		return
	}
	for n, s := range segs {
		in := insts[n]
		name := fmt.Sprintf("%s#%d", c.name, n)
		starts, stops := in.startCalls.Load(), in.stopCalls.Load()
		if starts != 1 || stops > 1 {
			k.fail("%s: Start×%d Stop×%d; want Start once, Stop at most once", name, starts, stops)
		}
		if in.lateStart.Load() {
			k.fail("%s: Start called after Run returned", name)
		}
		if starts > 0 && in.startSeq.Load() < evs[s.starting].seq {
			k.fail("%s: Start called before EventStarting", name)
		}
		if s.ready >= 0 && c.readier && in.fail == supBefore {
			k.fail("%s failed before it was ready, yet EventReady", name)
		}
		fb := failedBefore(s)
		if fb && (s.stopping >= 0 || stops != 0) {
			k.fail("%s: failed before it was ready, yet stopped (EventStopping %t, Stop×%d)", name, s.stopping >= 0, stops)
		}
		if !fb && (s.stopping < 0 || stops != 1) {
			k.fail("%s: started and did not fail before ready (ready %t, exited %t), but EventStopping %t, Stop×%d; want once",
				name, s.ready >= 0, s.exited >= 0, s.stopping >= 0, stops)
		}
		if s.stopping >= 0 && stops == 1 && in.stopSeq.Load() < evs[s.stopping].seq {
			k.fail("%s: Stop called before EventStopping", name)
		}
		if s.stopping >= 0 && (s.stopped >= 0) == (s.abandoned >= 0) {
			k.fail("%s: stopping, then stopped %t and abandoned %t; want exactly one", name, s.stopped >= 0, s.abandoned >= 0)
		}
		if s.abandoned >= 0 {
			k.abandoned = true
		} else if s.exited < 0 || k.res.open[in] {
			k.fail("%s: not abandoned, but when Run returned: EventExited %t, a call open %t", name, s.exited >= 0, k.res.open[in])
		}
		if s.exited >= 0 && in.fired.Load() {
			var pe *PanicError
			err := evs[s.exited].Err
			switch in.fail {
			case supBefore, supErr:
				if !errors.Is(err, in.startErr) {
					k.fail("%s: Start failed, EventExited.Err = %v", name, err)
				}
			case supPanic:
				if !errors.As(err, &pe) || pe.Value != in.panicV {
					k.fail("%s: Start panicked, EventExited.Err = %v", name, err)
				}
			}
		}
		// A failure while the Group ran: restarted, given up, or the
		// shutdown, and nothing else.
		crossed := s.stopping >= 0 && !rndBefore(s.stopped, k.shutdown) // stopped to restart, and the shutdown came first
		if s.exited >= 0 && s.exited < k.shutdown && in.fired.Load() && n == len(segs)-1 && s.restarting < 0 && !crossed {
			if c.optional && k.gaveUp[ci] < 0 {
				k.fail("%s: an optional component failed while the Group ran, and was neither restarted nor given up", name)
			}
		}
		if s.gaveUp >= 0 && !c.optional {
			k.fail("%s: EventGaveUp for a critical component", name)
		}
	}
}

// stops checks rule 3 for the stops in the shutdown.
func (k *supChecker) stops(ci int) {
	c, evs := k.p.comps[ci], k.evs
	for n, s := range k.segs[ci] {
		if s.stopping < 0 {
			continue
		}
		name := fmt.Sprintf("%s#%d", c.name, n)
		ev := evs[s.stopping]
		if s.stopping > k.shutdown {
			if ev.Deadline.After(k.sh.Deadline) {
				k.fail("%s: EventStopping.Deadline %v after the shutdown deadline", name, ev.Deadline.Sub(k.sh.Deadline))
			}
			// Everything that needs it has settled: no instance active,
			// none started after.
			for di, d := range k.p.comps {
				if !rndContains(d.needs, ci) {
					continue
				}
				for dn, ds := range k.segs[di] {
					end := ds.stopped
					if ds.abandoned >= 0 {
						end = ds.abandoned
					}
					if failedBefore(ds) {
						end = ds.exited
					}
					if ds.starting > s.stopping || !rndBefore(end, s.stopping) {
						k.fail("%s stopped before %s#%d, which needs it, had settled", name, d.name, dn)
					}
				}
			}
		}
		if c.stopTimeout > 0 && ev.Deadline.Sub(ev.Time) > c.stopTimeout {
			k.fail("%s: %v to stop; want at most its StopTimeout %v", name, ev.Deadline.Sub(ev.Time), c.stopTimeout)
		}
		if s.abandoned >= 0 {
			in := c.inst(n)
			at := evs[s.abandoned].Time
			if at.Before(ev.Deadline.Add(-rndSlop)) || at.After(ev.Deadline.Add(rndSlack)) {
				k.fail("%s abandoned %v from its deadline", name, at.Sub(ev.Deadline))
			}
			if in != nil && !in.stopHung.Load() && ev.Deadline.Sub(ev.Time) >= rndSched {
				k.fail("%s abandoned though nothing of it hangs", name)
			}
		}
	}
}

// errors checks rules 5 and 6.
func (k *supChecker) errors() {
	p, evs := k.p, k.evs
	comps, others := rndLeaves(k.res.err)
	if len(others) > 0 {
		k.fail("errors that are not *ComponentError: %v", others)
	}
	// The shutdown's cause: a component's failure only if it is critical.
	var shCE *ComponentError
	if errors.As(k.sh.Err, &shCE) {
		ci, ok := k.index[shCE.Component]
		switch {
		case !ok:
			k.fail("the shutdown's cause names an unknown component: %v", shCE)
		case p.comps[ci].optional && !strings.Contains(shCE.Error(), "Stop did not return"):
			k.fail("an optional component shut the Group down: %v", shCE)
		}
		found := false
		for _, ce := range comps {
			found = found || ce == shCE
		}
		if !found {
			k.fail("the shutdown's cause %v is not in Run's error", shCE)
		}
	} else if k.sh.Err != errRndShutdown && !errors.Is(k.sh.Err, context.Canceled) {
		k.fail("shutdown cause %v", k.sh.Err)
	}
	type site struct {
		ci   int
		what string
	}
	seen := map[site]*ComponentError{}
	for _, ce := range comps {
		ci, ok := k.index[ce.Component]
		if !ok {
			k.fail("error for an unknown component: %v", ce)
			continue
		}
		c, segs := p.comps[ci], k.segs[ci]
		what, ok := "", false
		var ge *GaveUpError
		var pe *PanicError
		// afterShutdown: instance n failed once the shutdown had begun.
		afterShutdown := func(n int) bool { return segs[n].exited > k.shutdown }
		// critical: instance n's failure shut the Group down.
		critical := func(n int) bool {
			return !c.optional && c.policy == nil && ce == shCE && segs[n].exited < k.shutdown
		}
		inst := func(match func(*supInst) bool) int {
			for n, in := range c.all() {
				if n < len(segs) && in.fired.Load() && match(in) {
					return n
				}
			}
			return -1
		}
		switch {
		case errors.As(ce.Err, &ge):
			what = "gave up"
			ok = c.policy != nil && !c.optional && ge.Restarts == c.policy.MaxRestarts && len(segs) == c.policy.MaxRestarts+1 &&
				len(ge.Errs) == min(3, c.policy.MaxRestarts+1) && ge.Window == c.policy.Window
			if ok {
				last := c.inst(len(segs) - 1)
				want := error(ErrExited)
				switch last.fail {
				case supBefore, supErr:
					want = last.startErr
				case supPanic:
					want = nil
					if !errors.As(ge.Errs[len(ge.Errs)-1], &pe) || pe.Value != last.panicV {
						k.fail("%s: GaveUpError's last error %v; want its last panic", c.name, ge.Errs[len(ge.Errs)-1])
					}
				}
				if want != nil && !errors.Is(ge.Errs[len(ge.Errs)-1], want) {
					k.fail("%s: GaveUpError's last error %v; want %v", c.name, ge.Errs[len(ge.Errs)-1], want)
				}
			}
		case errors.As(ce, &pe):
			what = "start panic"
			n := inst(func(in *supInst) bool { return in.fail == supPanic && pe.Value == in.panicV })
			ok = n >= 0 && (critical(n) || afterShutdown(n))
		case errors.Is(ce, ErrExited) && strings.Contains(ce.Error(), "which gave up"):
			what = "needs gave up"
			ok = len(segs) == 0 && !c.optional && ce == shCE
			given := false
			for _, d := range c.needs {
				given = given || k.gaveUp[d] >= 0
			}
			ok = ok && given
		case errors.Is(ce, ErrExited):
			what = "exit"
			n := inst(func(in *supInst) bool { return in.fail == supNil })
			ok = n >= 0 && critical(n)
		case ce.Phase == PhaseStopping && errors.Is(ce, ErrTimeout):
			what = "abandoned"
			for _, s := range segs {
				ok = ok || s.abandoned >= 0 && evs[s.abandoned].Err == error(ce)
			}
		default:
			for n, in := range c.all() {
				switch {
				case errors.Is(ce, in.startErr) && in.fired.Load() && n < len(segs):
					what, ok = "start failure", critical(n) || afterShutdown(n)
				case errors.Is(ce, in.stopErr) && in.stopFired.Load():
					what, ok = "stop failure", ce.Phase == PhaseStopping
				}
				if what != "" {
					break
				}
			}
		}
		if !ok {
			k.fail("unexplained error (%s): %v", what, ce)
			continue
		}
		if c.optional && what != "abandoned" && what != "stop failure" && what != "start failure" && what != "start panic" {
			k.fail("%s is optional, yet Run's error holds its %s: %v", c.name, what, ce)
		}
		if prev := seen[site{ci, what + ce.Error()}]; prev != nil {
			k.fail("%s: %s reported twice: %v", c.name, what, ce)
		}
		seen[site{ci, what + ce.Error()}] = ce
	}
	// What must be reported.
	has := func(match func(*ComponentError) bool) bool {
		for _, ce := range comps {
			if match(ce) {
				return true
			}
		}
		return false
	}
	for ci, c := range p.comps {
		segs := k.segs[ci]
		for n, s := range segs {
			in := c.inst(n)
			if s.abandoned >= 0 && !has(func(ce *ComponentError) bool { return evs[s.abandoned].Err == error(ce) }) {
				k.fail("%s#%d abandoned, but Run's error does not say so", c.name, n)
			}
			if in.stopFired.Load() && s.abandoned < 0 && !has(func(ce *ComponentError) bool { return errors.Is(ce, in.stopErr) }) {
				k.fail("%s#%d: its Stop failed, but Run's error does not say so", c.name, n)
			}
		}
		// A critical component that failed more often than its policy
		// allows, all before the shutdown: the Group shut down for it.
		if c.policy != nil && !c.optional && len(segs) == c.policy.MaxRestarts+1 {
			last := segs[len(segs)-1]
			if last.exited >= 0 && last.exited < k.shutdown && c.inst(len(segs)-1).fired.Load() {
				var ge *GaveUpError
				if shCE == nil || shCE.Component != c.name || !errors.As(shCE, &ge) {
					k.fail("%s failed %d times, once more than MaxRestarts %d allows, before the shutdown; the shutdown's cause is %v, want a *GaveUpError naming it",
						c.name, len(segs), c.policy.MaxRestarts, k.sh.Err)
				}
			}
		}
		if k.gaveUp[ci] >= 0 && !c.optional {
			k.fail("%s is critical, yet EventGaveUp", c.name)
		}
	}
	code := ExitCode(k.res.err)
	if timedOut := errors.Is(k.res.err, ErrTimeout); timedOut != k.abandoned {
		k.fail("errors.Is(err, ErrTimeout) = %t; abandoned %t", timedOut, k.abandoned)
	}
	switch {
	case k.abandoned:
		if code != ExitTimeout {
			k.fail("ExitCode = %d; want %d", code, ExitTimeout)
		}
	case len(comps) > 0:
		if code != ExitFailure {
			k.fail("ExitCode = %d; want %d", code, ExitFailure)
		}
	case k.res.err != nil || code != ExitOK:
		k.fail("err = %v, ExitCode = %d; want nil", k.res.err, code)
	}
}

// supTally sums up what the schedules did.
type supTally struct {
	mu                                                 sync.Mutex
	runs, clean, restarts, gaveUp, escalated, cutShort int
	abandoned                                          int
}

func (y *supTally) add(p *supPlan, res *supResult, failed bool) {
	y.mu.Lock()
	defer y.mu.Unlock()
	y.runs++
	if !failed {
		y.clean++
	}
	sh := -1
	for i, ev := range res.events {
		switch ev.Kind {
		case EventShutdown:
			sh = i
			var ge *GaveUpError
			if errors.As(ev.Err, &ge) {
				y.escalated++
			}
		case EventStarting:
			if ev.Attempt > 0 {
				y.restarts++
			}
		case EventGaveUp:
			y.gaveUp++
		case EventAbandoned:
			y.abandoned++
		}
	}
	// Restarts announced, and cut short by the shutdown.
	last := map[string]int{}
	for i, ev := range res.events {
		if ev.Kind == EventRestarting {
			last[ev.Component] = i
		}
		if ev.Kind == EventStarting {
			delete(last, ev.Component)
		}
	}
	for _, i := range last {
		if sh >= 0 && i < sh {
			y.cutShort++
		}
	}
}

func (y *supTally) String() string {
	y.mu.Lock()
	defer y.mu.Unlock()
	return fmt.Sprintf("%d schedules, %d clean; %d restarts; %d optional give-ups; %d critical escalations (GaveUpError); %d restarts in backoff when the shutdown began; %d abandonments",
		y.runs, y.clean, y.restarts, y.gaveUp, y.escalated, y.cutShort, y.abandoned)
}

func TestRandomSupervise(t *testing.T) {
	var tally supTally
	rndEachSeed(t, supSeeds, 0x5851f42d4c957f2d, func(t *testing.T, r *rand.Rand) {
		p := supGenerate(r)
		res := supRun(t, p)
		supCheck(t, p, res)
		tally.add(p, res, t.Failed())
	})
	t.Log(tally.String())
	if tally.restarts == 0 || tally.gaveUp == 0 || tally.escalated == 0 || tally.cutShort == 0 {
		t.Errorf("the generator missed a kind of schedule: %s", tally.String())
	}
}

// nestComp is a component of a nested Group in TestRandomSuperviseNested:
// ready at once, then it runs until Stop, or fails at once if fail is set.
type nestComp struct {
	name                  string
	fail                  bool
	err                   error
	seq                   *atomic.Int64
	quit, startDone       chan struct{}
	quitOnce              sync.Once
	startCalls, stopCalls atomic.Int32
	stopSeq               atomic.Int64
	fired                 atomic.Bool
}

func (c *nestComp) Start(ctx context.Context) error {
	c.startCalls.Add(1)
	defer close(c.startDone)
	if c.fail {
		c.fired.Store(true)
		return c.err
	}
	select {
	case <-c.quit:
	case <-ctx.Done():
	}
	return nil
}

func (c *nestComp) Stop(ctx context.Context) error {
	c.stopCalls.Add(1)
	c.stopSeq.Store(c.seq.Add(1))
	c.quitOnce.Do(func() { close(c.quit) })
	select {
	case <-c.startDone:
	case <-ctx.Done():
	}
	return nil
}

// TestRandomSuperviseNested: a nested Group as one node of a random chain,
// restarted (a fresh Group from RestartPolicy.New) or optional or neither,
// whose first instance may have a component that fails at once. Checked:
// every inner component started is stopped once; the inner components of
// the Group that runs at the shutdown stop after the node's dependent has
// stopped and within the node's own stop (between its EventStopping and
// EventStopped); a failure that shuts the parent down is in Run's error
// with the innermost *ComponentError naming the inner component; one that
// is restarted or given up is not in Run's error.
func TestRandomSuperviseNested(t *testing.T) {
	var restarted, escalated, gaveUp atomic.Int32
	rndEachSeed(t, 100, 0x14057b7ef767814f, func(t *testing.T, r *rand.Rand) {
		switch nestRun(t, r) {
		case "restarted":
			restarted.Add(1)
		case "escalated":
			escalated.Add(1)
		case "gaveup":
			gaveUp.Add(1)
		}
	})
	t.Logf("%d nested Groups restarted, %d shut the parent down, %d given up", restarted.Load(), escalated.Load(), gaveUp.Load())
	if restarted.Load() == 0 || escalated.Load() == 0 || gaveUp.Load() == 0 {
		t.Errorf("the generator missed a kind of schedule")
	}
}

func nestRun(t *testing.T, r *rand.Rand) (outcome string) {
	var (
		seq      atomic.Int64
		mu       sync.Mutex
		evs      []rndEvent
		prefix   = fmt.Sprintf("n%d-", rndRunID.Add(1))
		n        = 2 + r.IntN(3)
		at       = r.IntN(n)
		m        = 1 + r.IntN(3)
		failIdx  = -1
		optional = r.IntN(3) == 0
		restart  = r.IntN(2) == 0
		childs   [][]*nestComp // the inner components of each child Group made
	)
	if r.IntN(3) != 0 {
		failIdx = r.IntN(m)
	}
	name := func(i int) string { return fmt.Sprintf("%sc%d", prefix, i) }
	observe := func(ev Event) {
		mu.Lock()
		evs = append(evs, rndEvent{ev, seq.Add(1)})
		mu.Unlock()
	}
	newChild := func() Component {
		mu.Lock()
		k := len(childs)
		mu.Unlock()
		child := New(WithLogger(nil), WithObserver(observe))
		var inner []*nestComp
		for j := range m {
			c := &nestComp{name: fmt.Sprintf("%sin%d", prefix, j), fail: k == 0 && j == failIdx, seq: &seq,
				quit: make(chan struct{}), startDone: make(chan struct{})}
			c.err = fmt.Errorf("injected failure of %s in child %d", c.name, k)
			inner = append(inner, c)
			child.Add(c.name, c)
		}
		mu.Lock()
		childs = append(childs, inner)
		mu.Unlock()
		return child
	}
	g := New(WithSignals(), WithLogger(nil), WithShutdownTimeout(supBudget), WithDrainDelay(0), WithObserver(observe))
	plain := make([]*nestComp, n)
	for i := range n {
		if i == at {
			var opts []AddOption
			if restart {
				opts = append(opts, Restart(RestartPolicy{MaxRestarts: 2, Window: time.Minute, New: newChild}))
			}
			if optional {
				opts = append(opts, Optional())
			}
			g.Add(name(i), newChild(), opts...)
			continue
		}
		plain[i] = &nestComp{name: name(i), seq: &seq, quit: make(chan struct{}), startDone: make(chan struct{})}
		g.Add(name(i), plain[i])
	}
	errc := make(chan error, 1)
	go func() { errc <- g.Run(context.Background()) }()
	limit := time.NewTimer(rndFailsafe)
	defer limit.Stop()
	select {
	case <-g.Ready():
		if restart && failIdx >= 0 {
			// The restarted child is ready: its EventReady is that of attempt 1.
			for {
				mu.Lock()
				ok := false
				for _, ev := range evs {
					ok = ok || ev.Kind == EventReady && ev.Component == name(at) && ev.Attempt == 1
				}
				mu.Unlock()
				if ok {
					break
				}
				select {
				case <-limit.C:
					t.Fatalf("the nested Group was never ready again")
				case <-time.After(time.Millisecond):
				}
			}
		}
		g.Shutdown(errRndShutdown)
	case err := <-errc:
		errc <- err
	case <-limit.C:
	}
	var err error
	select {
	case err = <-errc:
	case <-limit.C:
		t.Fatalf("Run did not return")
	}
	var failsafe = time.NewTimer(rndFailsafe)
	defer failsafe.Stop()
	rndWaitGone(t, prefix, failsafe.C, nil)
	mu.Lock()
	defer mu.Unlock()
	defer func() {
		if t.Failed() {
			t.Logf("n=%d at=%d m=%d fail=%d optional=%t restart=%t err=%v\nevents:%s", n, at, m, failIdx, optional, restart, err,
				supDump(evs, evs[0].Time, &supPlan{comps: []*supComp{{name: prefix}}}))
		}
	}()
	find := func(k EventKind, comp string, attempt int) int64 {
		var seen int
		for _, ev := range evs {
			if ev.Kind == k && ev.Component == comp {
				if k == EventStopping || k == EventStopped {
					if seen == attempt {
						return ev.seq
					}
					seen++
					continue
				}
				return ev.seq
			}
		}
		return -1
	}
	for k, inner := range childs {
		for _, c := range inner {
			if st, sp := c.startCalls.Load(), c.stopCalls.Load(); st > 1 || sp != st && !c.fail {
				t.Errorf("child %d, %s: Start×%d Stop×%d; want Stop once per Start", k, c.name, st, sp)
			}
		}
	}
	// The child that ran at the shutdown: its components stop within its
	// stop, after its dependent stopped.
	var last []*nestComp
	for _, inner := range childs {
		if inner[0].startCalls.Load() > 0 {
			last = inner
		}
	}
	stops, inShutdown := 0, false
	for _, ev := range evs {
		if ev.Kind == EventStopping && ev.Component == name(at) {
			stops++
			// A Group given up (or stopped to restart) while the parent
			// runs is stopped at once: one for one, its dependents go on.
			inShutdown = ev.Phase == PhaseStopping
		}
	}
	nodeStop, nodeStopped := find(EventStopping, name(at), stops-1), find(EventStopped, name(at), stops-1)
	for _, c := range last {
		if c.fired.Load() || c.stopCalls.Load() == 0 {
			continue
		}
		if s := c.stopSeq.Load(); s < nodeStop || nodeStopped >= 0 && s > nodeStopped {
			t.Errorf("%s stopped outside its Group's stop (%d not in %d..%d)", c.name, s, nodeStop, nodeStopped)
		}
		if at+1 < n && inShutdown {
			if dep := find(EventStopped, name(at+1), 0); dep >= 0 && c.stopSeq.Load() < dep {
				t.Errorf("%s stopped before %s, which needs its Group, had stopped", c.name, name(at+1))
			}
		}
	}
	// Errors: the failure is in Run's error, naming the inner component,
	// iff it shut the parent down.
	if failIdx < 0 {
		if err != nil {
			t.Errorf("Run: %v; want nil", err)
		}
		return "clean"
	}
	failed := childs[0][failIdx]
	inErr := errors.Is(err, failed.err)
	// The driver's shutdown may come before the parent hears of the
	// failure: then the failure is one of the shutdown, and reported as any.
	driverShut, exited := int64(-1), find(EventExited, name(at), 0)
	for _, ev := range evs {
		if ev.Kind == EventShutdown && ev.Err == errRndShutdown {
			driverShut = ev.seq
		}
	}
	switch {
	case driverShut >= 0 && exited > driverShut:
		return "late"
	case restart:
		outcome = "restarted"
		if inErr {
			t.Errorf("a nested Group restarted after its failure, yet Run's error holds it: %v", err)
		}
	case optional:
		outcome = "gaveup"
		if inErr || find(EventGaveUp, name(at), 0) < 0 {
			t.Errorf("an optional nested Group failed: in Run's error %t, EventGaveUp %t; want false, true", inErr, find(EventGaveUp, name(at), 0) >= 0)
		}
	default:
		outcome = "escalated"
		if !inErr {
			t.Errorf("Run: %v; want the failure of %s", err, failed.name)
			break
		}
		var ce *ComponentError
		innermost := ""
		for e := error(err); errors.As(e, &ce); e = ce.Err {
			innermost = ce.Component
		}
		if innermost != failed.name {
			t.Errorf("Run: %v; the innermost *ComponentError names %q, want %q", err, innermost, failed.name)
		}
	}
	return outcome
}
