package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"
)

// The scheduler: one run of a Group, from the first Start to the last Stop.
//
// Everything a run decides, it decides on one goroutine, the loop: the
// goroutines that call the components' Start, Stop and Drain only report
// back to it, by message, and so do the timers, signals and requests from
// other goroutines. The loop alone changes a component's state (unit.go) and
// the Group's phase, and it alone emits events, so they come out in causal
// order.
//
// The phases, as the loop moves through them:
//
//	starting  launch each component once all it needs is ready
//	running   every component ready; wait for the shutdown's cause
//	draining  readiness off, Drainers told, keep serving for the drain delay
//	stopping  stop each component once all that needs it has stopped
//	stopped   every component stopped or abandoned: the run is over

type runMode int

const (
	modeRun       runMode = iota // Run: owns the process (signals, drain delay)
	modeComponent                // Start/Stop: a Group inside another
)

// msgKind says what a goroutine of the run reports to the loop.
type msgKind uint8

const (
	msgReady   msgKind = iota + 1 // the component is ready
	msgExited                     // its Start returned err
	msgStopped                    // its Stop returned err
	msgDrained                    // its Drain returned (err: a panic)
)

type msg struct {
	kind msgKind
	gen  int
	u    *unit
	err  error
}

// timerKind says what a timer of the loop is for.
type timerKind uint8

const (
	timerStart    timerKind = iota + 1 // the start timeout
	timerDrain                         // the drain delay is over
	timerAbandon                       // a stopping component's time is up
	timerRestart                       // a component's backoff is over
	timerDrainCut                      // Drains still running are abandoned
	timerProgress                      // time to log what is still stopping
)

// progressEvery is how often a long shutdown logs what it still waits for.
const progressEvery = 5 * time.Second

type timer struct {
	at   time.Time
	kind timerKind
	u    *unit
	gen  int
}

// timers is a min-heap of timers by time (container/heap's algorithm,
// without its boxing of every timer into an interface).
type timers []timer

func (h *timers) push(t timer) {
	*h = append(*h, t)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q[i].at.Before(q[p].at) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *timers) pop() timer {
	q := *h
	t := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q = q[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && q[l].at.Before(q[m].at) {
			m = l
		}
		if r := l + 1; r < n && q[r].at.Before(q[m].at) {
			m = r
		}
		if m == i {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return t
}

// request is what other goroutines ask of a run; the loop takes it when woken.
type request struct {
	cause error           // begin the shutdown (Shutdown, Stop of a Group run by Run)
	drain bool            // Drain of a Group run as a component
	stop  context.Context // Stop of a Group run as a component
}

// run is one run of a Group.
type run struct {
	g    *Group
	cfg  *config
	mode runMode

	units []*unit

	// The inbox: the goroutines of the run append their messages under
	// inMu and wake the loop when the inbox was empty; the loop takes them
	// all at once. (A channel send per message costs each goroutine a
	// select and the loop a wake-up per message.)
	inMu     sync.Mutex
	inbox    []msg
	spare    []msg
	inClosed bool          // the loop has ended: messages are dropped
	inWake   chan struct{} // buffered, 1
	over     chan struct{} // closed when the loop has ended
	wake     chan struct{} // a request is waiting (buffered, 1)
	toStop   chan struct{} // component mode: closed when Start must return

	base     context.Context // the caller's values, without its cancellation
	stopBase context.Context // base, cancelled with ErrForced, with the cause
	force    context.CancelCauseFunc

	phase      Phase
	phaseAt    time.Time
	cause      error
	shutdownAt time.Time // when the shutdown began
	deadline   time.Time // the shutdown deadline; zero until the shutdown begins
	forcedAt   time.Time
	stopReq    context.Context // component mode: the Stop that asked for the stop

	notReady   int       // components not ready yet, in the start phase
	unsettled  int       // components not stopped yet, in the stop phase
	drainUntil time.Time // when the drain delay is over
	drainsOut  int       // Drains still running
	signals    int       // signals received

	timers timers
	clock  *time.Timer
}

func newRun(g *Group, ctx context.Context, mode runMode) *run {
	r := &run{
		g:      g,
		cfg:    &g.cfg,
		mode:   mode,
		units:  g.units,
		inWake: make(chan struct{}, 1),
		over:   make(chan struct{}),
		wake:   g.wake,
		toStop: make(chan struct{}),
	}
	parent, _ := ctx.Value(groupKey{}).(*groupMark)
	r.base = context.WithValue(context.WithoutCancel(ctx), groupKey{}, &groupMark{g: g, parent: parent})
	return r
}

// groupKey marks the contexts a Group gives its components, so that a Stop
// called from inside the Group (a request handler) does not wait for itself.
// The mark names the Group and the Groups it is nested in.
type groupKey struct{}

type groupMark struct {
	g      *Group
	parent *groupMark
}

// inside reports whether ctx comes from a component of g, or of a Group
// nested in g.
func inside(ctx context.Context, g *Group) bool {
	m, _ := ctx.Value(groupKey{}).(*groupMark)
	for ; m != nil; m = m.parent {
		if m.g == g {
			return true
		}
	}
	return false
}

// causeKey carries the shutdown's cause in a stop context, so that a Group
// stopped as a component gives its own components the parent's cause.
type causeKey struct{}

// labelKey is the pprof label that names the component a goroutine works
// for; see [ComponentError.Stacks].
const labelKey = "lifecycle.component"

// send reports m to the loop, or drops it if the loop has ended. It never
// blocks.
func (r *run) send(m msg) {
	r.inMu.Lock()
	if r.inClosed {
		r.inMu.Unlock()
		return
	}
	wake := len(r.inbox) == 0
	r.inbox = append(r.inbox, m)
	r.inMu.Unlock()
	if wake {
		select {
		case r.inWake <- struct{}{}:
		default:
		}
	}
}

// takeInbox returns the messages waiting, in the order they were sent.
func (r *run) takeInbox() []msg {
	r.inMu.Lock()
	batch := r.inbox
	r.inbox = r.spare[:0]
	r.inMu.Unlock()
	r.spare = batch
	return batch
}

// closeInbox drops the messages sent from now on.
func (r *run) closeInbox() {
	r.inMu.Lock()
	r.inClosed = true
	r.inbox = nil
	r.inMu.Unlock()
}

// loop runs the Group until every component has stopped. ctx is the
// caller's: its end begins the shutdown (Run) or forces it (Start).
func (r *run) loop(ctx context.Context) {
	defer close(r.over)
	defer r.closeInbox()
	var sigs chan os.Signal
	if r.mode == modeRun && len(r.cfg.signals) > 0 {
		sigs = make(chan os.Signal, 2)
		signal.Notify(sigs, r.cfg.signals...)
		defer signal.Stop(sigs)
	}
	r.clock = time.NewTimer(time.Hour)
	r.clock.Stop()
	defer r.clock.Stop()
	var armed time.Time

	r.takeRequests() // a Shutdown before Run
	if r.cause == nil && ctx.Err() != nil {
		r.shutdown(context.Cause(ctx)) // nothing starts
	}
	if r.cause == nil {
		r.beginStart()
	}
	done := ctx.Done()
	var stopDone <-chan struct{} // the context of the Stop that asked to stop (component mode)
	if r.stopReq != nil {
		stopDone = r.stopReq.Done()
	}
	for r.phase != PhaseStopped {
		if len(r.timers) > 0 && !r.timers[0].at.Equal(armed) {
			armed = r.timers[0].at
			r.clock.Reset(time.Until(armed))
		}
		select {
		case <-r.inWake:
			for _, m := range r.takeInbox() {
				r.handle(m)
			}
		case <-r.clock.C:
			armed = time.Time{}
			r.tick()
		case <-r.wake:
			r.takeRequests()
			if r.stopReq != nil && stopDone == nil {
				stopDone = r.stopReq.Done()
			}
		case s := <-sigs:
			r.signals++
			if r.signals == 1 {
				r.shutdown(&SignalError{Signal: s})
			} else {
				r.forceNow()
			}
		case <-done:
			done = nil
			if r.mode == modeRun {
				r.shutdown(context.Cause(ctx))
			} else {
				// The parent gave up on this Group: end at once.
				r.shutdown(context.Cause(ctx))
				r.beginStop()
				r.forceNow()
			}
		case <-stopDone:
			stopDone = nil
			r.forceNow()
		}
	}
	r.finish()
}

// setPhase moves the Group to phase p and reports it.
func (r *run) setPhase(p Phase) { r.setPhaseUntil(p, time.Time{}) }

// setPhaseUntil moves the Group to phase p, which ends at until, and reports it.
func (r *run) setPhaseUntil(p Phase, until time.Time) {
	now := time.Now()
	took := now.Sub(r.phaseAt)
	prev := r.phase
	r.phase, r.phaseAt = p, now
	r.g.mu.Lock()
	r.g.phase = p
	if p == PhaseRunning {
		close(r.g.ready)
	}
	r.g.mu.Unlock()
	r.emit(Event{Kind: EventPhase, Phase: p, Prev: prev, Duration: took, Deadline: until})
}

func (r *run) setState(u *unit, s State) {
	r.g.mu.Lock()
	u.state, u.since = s, time.Now()
	r.g.mu.Unlock()
}

// recordEach records the errors of a nested Group one by one, each under
// the nested Group's name, so that each names its innermost component.
func (r *run) recordEach(u *unit, phase Phase, err error) {
	if _, nested := u.c.(*Group); !nested {
		r.record(&ComponentError{Component: u.name, Phase: phase, Err: err})
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if errors.Is(e, ErrForced) && !errors.As(e, new(*ComponentError)) {
				continue // the parent says it was forced
			}
			r.record(&ComponentError{Component: u.name, Phase: phase, Err: e})
		}
		return
	}
	r.record(&ComponentError{Component: u.name, Phase: phase, Err: err})
}

// setErr sets u's last failure, which Status reads.
func (r *run) setErr(u *unit, err error) {
	r.g.mu.Lock()
	u.lastErr = err
	r.g.mu.Unlock()
}

// record keeps err for Run's (or Start's, or Stop's) return.
func (r *run) record(err error) {
	r.g.mu.Lock()
	r.g.errs = append(r.g.errs, err)
	r.g.mu.Unlock()
}

func (r *run) schedule(t timer) { r.timers.push(t) }

// beginStart launches the components that need nothing.
func (r *run) beginStart() {
	r.setPhase(PhaseStarting)
	if len(r.units) == 0 {
		r.startDone()
		return
	}
	r.schedule(timer{at: time.Now().Add(r.cfg.startTimeout), kind: timerStart})
	r.notReady = len(r.units)
	for _, u := range r.units {
		u.waitNeeds = len(u.needs)
	}
	for _, u := range r.units {
		if u.waitNeeds == 0 && r.cause == nil {
			r.launch(u)
		}
	}
}

// startDone ends the start phase once every component is ready.
func (r *run) startDone() {
	if r.cause != nil || r.phase != PhaseStarting {
		return
	}
	r.setPhase(PhaseRunning)
}

// launch calls u's Start in a goroutine of the errgroup.
func (r *run) launch(u *unit) {
	u.gen++
	u.current.Store(int64(u.gen))
	gen := u.gen
	u.inStart = true
	u.ctx, u.cancel = context.WithCancelCause(pprof.WithLabels(r.base, pprof.Labels(labelKey, r.label(u))))
	r.setState(u, StateStarting)
	r.emit(Event{Kind: EventStarting, Component: u.name, Attempt: u.restarts})
	u.startedAt = time.Now()
	c, ctx := u.c, u.ctx
	r.g.eg.Go(func() error {
		pprof.SetGoroutineLabels(ctx)
		r.runStart(u, gen, c, ctx)
		return nil
	})
}

// label is the value of the pprof label for u: its name, under the name of
// the component of the parent Group this Group runs in, if any.
func (r *run) label(u *unit) string {
	if parent, ok := pprof.Label(r.base, labelKey); ok {
		return parent + "/" + u.name
	}
	return u.name
}

// runStart is the goroutine of one Start: it finds out when the component is
// ready, calls Start, and reports both.
func (r *run) runStart(u *unit, gen int, c Component, ctx context.Context) {
	if _, ok := c.(selfReady); ok {
		// The adapter calls reportReady itself.
		ctx = context.WithValue(ctx, readyKey{}, func() { r.send(msg{kind: msgReady, u: u, gen: gen}) })
		err := call(c, ctx, false)
		u.returned.Store(int64(gen))
		r.send(msg{kind: msgExited, u: u, gen: gen, err: err})
		return
	}
	var ready <-chan struct{}
	rd, isReadier := c.(Readier)
	if isReadier {
		if err := protect(func() error { ready = rd.Ready(); return nil }); err != nil {
			u.returned.Store(int64(gen))
			r.send(msg{kind: msgExited, u: u, gen: gen, err: fmt.Errorf("Ready: %w", err)})
			return
		}
		if u.current.Load() != int64(gen) || isClosed(r.over) {
			// Ready blocked until the Group gave up on this start (it was
			// abandoned, or the run is over): Start is not called.
			u.returned.Store(int64(gen))
			r.send(msg{kind: msgExited, u: u, gen: gen})
			return
		}
	}
	var returned, watched chan struct{}
	if !isReadier || ready == nil || isClosed(ready) {
		r.send(msg{kind: msgReady, u: u, gen: gen})
	} else {
		// A watcher reports readiness while Start runs. It ends before Start's
		// return is reported, so that ready always comes first.
		returned, watched = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(watched)
			pprof.SetGoroutineLabels(ctx)
			select {
			case <-ready:
				r.send(msg{kind: msgReady, u: u, gen: gen})
			case <-returned:
				// A Ready closed as Start returns counts: the component
				// was ready, and its return is reported after.
				if isClosed(ready) {
					r.send(msg{kind: msgReady, u: u, gen: gen})
				}
			}
		}()
	}
	err := call(c, ctx, false)
	if returned != nil {
		close(returned)
		<-watched
	}
	u.returned.Store(int64(gen))
	r.send(msg{kind: msgExited, u: u, gen: gen, err: err})
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// handle takes one message from a goroutine of the run.
func (r *run) handle(m msg) {
	u := m.u
	if m.gen != u.gen {
		return // from an instance abandoned or replaced since
	}
	switch m.kind {
	case msgReady:
		r.ready(u)
	case msgExited:
		r.exited(u, m.err)
	case msgStopped:
		r.stopped(u, m.err)
	case msgDrained:
		r.drained(u, m.err)
	}
}

// ready takes the news that u is ready.
func (r *run) ready(u *unit) {
	if u.state != StateStarting {
		return // stopped while it was starting: too late to count
	}
	r.setState(u, StateRunning)
	r.emit(Event{Kind: EventReady, Component: u.name, Duration: time.Since(u.startedAt), Attempt: u.restarts})
	if u.stopPending {
		// Its turn to stop came while its ready was on the way: it was
		// ready, so it is stopped, once.
		r.stopUnit(u)
		return
	}
	if r.phase != PhaseStarting || u.wasReady {
		u.wasReady = true
		return // a restart
	}
	u.wasReady = true
	r.notReady--
	for _, d := range u.neededBy {
		d.waitNeeds--
		if d.waitNeeds == 0 && d.state == StateIdle && r.cause == nil {
			r.launch(d)
		}
	}
	if r.notReady == 0 {
		r.startDone()
	}
}

// exited takes the news that u's Start returned err.
func (r *run) exited(u *unit, err error) {
	u.inStart = false
	r.emit(Event{Kind: EventExited, Component: u.name, Err: err})
	switch u.state {
	case StateStarting:
		// Start returned before the component was ready: it failed to start,
		// and is not stopped.
		u.stopPending = false
		if err == nil {
			err = fmt.Errorf("Start returned before the component was ready: %w", ErrExited)
		}
		if r.stopping() {
			// The shutdown reached it while it was failing.
			if !benign(u.ctx, err) {
				r.record(&ComponentError{Component: u.name, Phase: PhaseStarting, Err: err})
			}
			r.setState(u, StateFailed)
			u.cancel(r.cause)
			r.settle(u)
			return
		}
		r.failed(u, PhaseStarting, err)
	case StateRunning:
		if r.cause != nil {
			// The shutdown has begun: returning is what it asked for, sooner
			// or later. Its Stop is still called in turn.
			if !benign(u.ctx, err) {
				r.recordEach(u, r.phase, err)
			}
			r.setState(u, StateExited)
			return
		}
		if err == nil {
			err = ErrExited
		}
		r.setState(u, StateExited)
		r.failed(u, PhaseRunning, err)
	case StateStopping:
		if !benign(u.ctx, err) {
			r.recordEach(u, PhaseStopping, err)
		}
		if !u.inStop {
			r.stopDone(u)
		}
	}
}

// stopped takes the news that u's Stop returned err.
func (r *run) stopped(u *unit, err error) {
	u.inStop = false
	if u.state != StateStopping {
		return
	}
	if err != nil {
		if _, nested := u.c.(*Group); nested {
			r.recordEach(u, PhaseStopping, err)
		} else {
			if cause := context.Cause(u.stopCtx); cause != nil && !errors.Is(err, cause) {
				err = fmt.Errorf("%w (%w)", err, cause)
			}
			r.record(&ComponentError{Component: u.name, Phase: PhaseStopping, Err: err})
		}
	}
	u.stopErr = err
	// A Start's context is cancelled once its Stop has returned, not before,
	// so that what it does is not cut short while Stop runs.
	u.cancel(r.causeOr(errStopped))
	if !u.inStart {
		r.stopDone(u)
	}
}

// drained takes the news that u's Drain returned.
func (r *run) drained(u *unit, err error) {
	if !u.inDrain {
		return // abandoned already
	}
	u.inDrain = false
	r.drainsOut--
	if err != nil {
		r.record(&ComponentError{Component: u.name, Phase: PhaseDraining, Err: err})
	}
	r.emit(Event{Kind: EventDrained, Component: u.name, Err: err})
	r.maybeStop()
}

// shutdown begins the shutdown with cause, once.
func (r *run) shutdown(cause error) {
	if cause == nil {
		cause = context.Canceled
	}
	if r.cause != nil {
		return
	}
	r.cause = cause
	r.shutdownAt = time.Now()
	r.schedule(timer{at: r.shutdownAt.Add(progressEvery), kind: timerProgress})
	r.g.mu.Lock()
	r.g.cause = cause
	r.g.mu.Unlock()
	if r.deadline.IsZero() {
		r.deadline = time.Now().Add(r.cfg.shutdownTimeout)
	}
	fctx, force := context.WithCancelCause(r.base)
	r.stopBase = context.WithValue(fctx, causeKey{}, cause)
	r.force = force
	r.emit(Event{Kind: EventShutdown, Err: cause, Deadline: r.deadline})
	if r.mode == modeComponent && r.stopReq == nil {
		// A Group inside another reports and waits: the parent drains it and
		// stops it. Only a failed start is rolled back here.
		close(r.toStop)
		if r.phase == PhaseStarting {
			r.beginStop()
		}
		return
	}
	switch r.phase {
	case PhaseRunning:
		r.beginDrain()
	case PhaseDraining:
		r.maybeStop()
	default:
		r.beginStop()
	}
}

// forceNow cuts the shutdown short: every stop context is cancelled with
// ErrForced, and what has not stopped within forceGrace is abandoned.
func (r *run) forceNow() {
	if !r.forcedAt.IsZero() {
		return
	}
	if r.cause == nil {
		r.shutdown(ErrForced)
	}
	r.forcedAt = time.Now()
	r.g.mu.Lock()
	r.g.forced = true
	r.g.mu.Unlock()
	r.force(ErrForced)
	r.emit(Event{Kind: EventForced, Err: ErrForced})
	if r.phase == PhaseDraining {
		r.beginStop()
	}
	end := r.forcedAt.Add(forceGrace)
	for _, u := range r.units {
		if u.state == StateStopping && u.end.After(end) {
			u.end = end
			r.schedule(timer{at: end, kind: timerAbandon, u: u, gen: u.gen})
		}
	}
}

// beginDrain turns readiness off, tells the Drainers, and keeps serving for
// the drain delay if there is something to drain.
func (r *run) beginDrain() {
	if r.phase != PhaseRunning {
		return
	}
	now := time.Now()
	r.drainUntil = now
	if r.mode == modeRun && r.g.drains() {
		r.drainUntil = now.Add(r.cfg.drainDelay)
	}
	r.setPhaseUntil(PhaseDraining, r.drainUntil)
	for _, u := range r.units {
		d, ok := u.c.(Drainer)
		if !ok || (u.state != StateRunning && u.state != StateExited) || u.drained {
			continue
		}
		u.drained, u.inDrain = true, true
		r.drainsOut++
		gen, ctx := u.gen, u.ctx
		r.emit(Event{Kind: EventDraining, Component: u.name})
		go func() {
			pprof.SetGoroutineLabels(ctx)
			err := protect(func() error { d.Drain(); return nil })
			r.send(msg{kind: msgDrained, u: u, gen: gen, err: err})
		}()
	}
	if r.drainUntil.After(now) {
		r.schedule(timer{at: r.drainUntil, kind: timerDrain})
	}
	if r.drainsOut > 0 {
		// Drain must not block: one still running shortly after the delay
		// is abandoned, and the stop goes on.
		cut := r.drainUntil.Add(min(maxHardGrace, r.cfg.shutdownTimeout/10))
		if !r.deadline.IsZero() {
			cut = earliest(cut, r.deadline)
		}
		r.schedule(timer{at: cut, kind: timerDrainCut})
	}
	r.maybeStop()
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// maybeStop begins the stop once the drain is over.
func (r *run) maybeStop() {
	if r.phase != PhaseDraining {
		return
	}
	if r.mode == modeComponent && r.stopReq == nil {
		return // the parent says when
	}
	if r.forcedAt.IsZero() && (r.drainsOut > 0 || time.Now().Before(r.drainUntil)) {
		return
	}
	r.beginStop()
}

// beginStop moves the Group to the stop phase and stops what needs nothing
// stopped first.
func (r *run) beginStop() {
	if r.phase >= PhaseStopping {
		return
	}
	r.setPhase(PhaseStopping)
	// The reserves are shares of the budget this Group really has: its own,
	// or, nested, what its parent gave it.
	budget := r.cfg.shutdownTimeout
	if !r.deadline.IsZero() && !r.shutdownAt.IsZero() {
		budget = r.deadline.Sub(r.shutdownAt)
	}
	reserve(r.units, budget)
	for _, u := range r.units {
		switch {
		case u.state == StateBackoff:
			r.setState(u, StateStopped) // not started again
		case u.needsStop() || u.state == StateStopping:
			r.unsettled++
			u.waitDependents = 0
			for _, d := range u.neededBy {
				if d.needsStop() || d.state == StateStopping {
					u.waitDependents++
				}
			}
		}
	}
	for _, u := range r.units {
		if u.needsStop() && u.waitDependents == 0 {
			r.tryStop(u)
		}
	}
	r.maybeEnd()
}

func (r *run) stopping() bool { return r.phase >= PhaseStopping }

// tryStop stops u, unless it is still starting and its Start has returned
// already: then whether it is stopped depends on whether it was ready,
// which the loop learns from the messages still to come (ready, then
// exited: it is stopped; exited alone: it failed to start and is not).
func (r *run) tryStop(u *unit) {
	if u.state == StateStarting && u.returned.Load() == int64(u.gen) {
		u.stopPending = true
		return
	}
	r.stopUnit(u)
}

// stopUnit calls u's Stop in a goroutine, with a context whose deadline is
// u's own (see reserve and the budget rules in the package documentation).
func (r *run) stopUnit(u *unit) {
	u.stopPending = false
	now := time.Now()
	var end time.Time
	if r.cause != nil {
		end = r.deadline.Add(-u.reserve)
	} else {
		end = now.Add(r.cfg.shutdownTimeout) // a restart's stop
	}
	if st := u.spec.stopTimeout; st > 0 {
		end = earliest(end, now.Add(st))
	}
	if !r.forcedAt.IsZero() {
		end = earliest(end, r.forcedAt.Add(forceGrace))
	}
	if r.cause != nil {
		end = earliest(end, r.deadline)
	}
	if end.Before(now) {
		end = now
	}
	grace := min(maxHardGrace, end.Sub(now)/5)
	base := r.stopBase
	if base == nil {
		base = r.base
	}
	u.stopCtx, u.stopEnd = context.WithDeadlineCause(base, end.Add(-grace), ErrTimeout)
	u.end = end
	u.inStop = true
	u.stopErr = nil
	switch {
	case r.cause != nil:
		u.after = StateStopped
	case u.gaveUp:
		u.after = StateFailed
	default:
		u.after = StateBackoff
	}
	u.stopAt = now
	r.setState(u, StateStopping)
	r.emit(Event{Kind: EventStopping, Component: u.name, Deadline: end})
	r.schedule(timer{at: end, kind: timerAbandon, u: u, gen: u.gen})
	gen, c, ctx, sctx := u.gen, u.c, u.ctx, u.stopCtx
	go func() {
		pprof.SetGoroutineLabels(ctx)
		err := call(c, sctx, true)
		r.send(msg{kind: msgStopped, u: u, gen: gen, err: err})
	}()
}

// stopDone takes the news that u has stopped: both its Stop and its Start
// have returned.
func (r *run) stopDone(u *unit) {
	u.stopEnd()
	u.cancel(r.causeOr(errStopped))
	u.stopTook = time.Since(u.stopAt)
	r.emit(Event{Kind: EventStopped, Component: u.name, Duration: u.stopTook, Err: u.stopErr})
	next := u.after
	if next == StateBackoff && r.cause != nil {
		next = StateStopped // the shutdown began: not started again
	}
	if next == StateBackoff {
		r.backoff(u)
		return
	}
	r.setState(u, next)
	r.settle(u)
}

func (r *run) causeOr(err error) error {
	if r.cause != nil {
		return r.cause
	}
	return err
}

// settle counts u as done with in the stop phase, and stops what it needs
// once nothing else needs it.
func (r *run) settle(u *unit) {
	if !r.stopping() {
		return
	}
	r.unsettled--
	for _, d := range u.needs {
		d.waitDependents--
		if d.waitDependents == 0 && d.needsStop() {
			r.tryStop(d)
		}
	}
	r.maybeEnd()
}

func (r *run) maybeEnd() {
	if r.phase == PhaseStopping && r.unsettled == 0 {
		r.setPhase(PhaseStopped)
	}
}

// tick handles the timers that are due.
func (r *run) tick() {
	now := time.Now()
	for len(r.timers) > 0 && !r.timers[0].at.After(now) {
		t := r.timers.pop()
		switch t.kind {
		case timerStart:
			if r.phase == PhaseStarting && r.cause == nil {
				r.startTimedOut()
			}
		case timerDrain:
			r.maybeStop()
		case timerDrainCut:
			r.cutDrains()
		case timerAbandon:
			u := t.u
			if u.gen == t.gen && u.state == StateStopping && !u.end.After(now) {
				r.abandon(u)
			}
		case timerRestart:
			r.restart(t.u, t.gen)
		case timerProgress:
			if r.phase < PhaseStopped {
				r.logProgress()
				r.schedule(timer{at: now.Add(progressEvery), kind: timerProgress})
			}
		}
	}
}

// startTimedOut fails the start: components are not ready in time.
func (r *run) startTimedOut() {
	var names []string
	for _, u := range r.units {
		if u.state != StateRunning {
			names = append(names, u.name)
		}
	}
	err := &ComponentError{Component: names[0], Phase: PhaseStarting,
		Err: fmt.Errorf("not ready within the start timeout %v (not ready: %s): %w", r.cfg.startTimeout, strings.Join(names, ", "), ErrTimeout)}
	r.record(err)
	r.shutdown(err)
}

// cutDrains abandons the Drains that have not returned.
func (r *run) cutDrains() {
	for _, u := range r.units {
		if !u.inDrain {
			continue
		}
		u.inDrain = false
		r.drainsOut--
		cerr := &ComponentError{Component: u.name, Phase: PhaseDraining,
			Err: fmt.Errorf("Drain did not return (Drain must not block): %w", ErrTimeout), Stacks: stacksOf(r.label(u))}
		r.record(cerr)
		r.emit(Event{Kind: EventAbandoned, Component: u.name, Err: cerr})
	}
	r.maybeStop()
}

// abandon gives up on u, whose time ran out while it was stopping.
func (r *run) abandon(u *unit) {
	what := "Stop did not return"
	if !u.inStop {
		what = "Start did not return after Stop"
	}
	cause := context.Cause(u.stopCtx)
	var err error
	switch {
	case errors.Is(cause, ErrForced):
		err = fmt.Errorf("%s before the shutdown was forced: %w", what, ErrForced)
	case u.spec.stopTimeout > 0 && !u.end.Before(u.stopAt.Add(u.spec.stopTimeout)):
		err = fmt.Errorf("%s within its stop timeout %v: %w", what, u.spec.stopTimeout, ErrTimeout)
	default:
		err = fmt.Errorf("%s within the shutdown timeout: %w", what, ErrTimeout)
	}
	cerr := &ComponentError{Component: u.name, Phase: PhaseStopping, Err: err, Stacks: stacksOf(r.label(u))}
	r.record(cerr)
	r.setState(u, StateAbandoned)
	r.setErr(u, cerr)
	r.emit(Event{Kind: EventAbandoned, Component: u.name, Err: cerr, Duration: time.Since(u.stopAt)})
	u.gen++ // what its goroutines report from now on is stale
	u.current.Store(int64(u.gen))
	u.stopEnd()
	u.cancel(r.causeOr(errStopped))
	if r.stopping() {
		r.settle(u)
		return
	}
	// Abandoned while stopping for a restart: it gives up.
	r.giveUp(u, cerr)
}

// takeRequests takes what other goroutines asked for.
func (r *run) takeRequests() {
	r.g.mu.Lock()
	req := r.g.req
	r.g.req = request{}
	r.g.mu.Unlock()
	if req.drain {
		r.beginDrain() // a parent drains this Group; it waits for the parent's Stop
	}
	if req.stop != nil && r.stopReq == nil {
		r.stopReq = req.stop
		if dl, ok := req.stop.Deadline(); ok {
			r.deadline = dl // the parent's budget for this Group
		}
		if r.cause == nil {
			cause, _ := req.stop.Value(causeKey{}).(error)
			if cause == nil {
				cause = errStopRequested
			}
			r.shutdown(cause)
		}
		r.beginDrain()
		r.beginStop()
		if req.stop.Err() != nil {
			r.forceNow()
		}
	}
	if req.cause != nil {
		r.shutdown(req.cause)
	}
}

// finish ends the run: every Start's context is cancelled, and the
// goroutines that are not abandoned are waited for.
func (r *run) finish() {
	abandoned := false
	for _, u := range r.units {
		if u.cancel != nil {
			u.cancel(r.causeOr(errStopped))
		}
		if u.inStart || u.inStop || u.inDrain || u.state == StateAbandoned {
			abandoned = true
		}
	}
	if r.force != nil {
		r.force(nil)
	}
	if !abandoned {
		_ = r.g.eg.Wait() // every Start has returned: this does not block
	}
}

// failed handles the failure of u (its Start failed, returned, or panicked)
// while the Group runs: restart it, give it up, or shut the Group down.
func (r *run) failed(u *unit, phase Phase, err error) {
	r.setErr(u, err)
	now := time.Now()
	u.failures = append(u.failures, failure{at: now, err: err})
	if p := u.spec.restart; p != nil {
		if delay, ok := p.next(u, now); ok {
			u.nextDelay = delay
			if u.state == StateExited {
				r.stopUnit(u) // stopped once per start, then started again
				return
			}
			r.backoff(u)
			return
		}
		err = &GaveUpError{Restarts: u.restarts, Window: p.Window, Errs: lastErrs(u.failures, 3)}
		r.setErr(u, err)
	}
	cerr := &ComponentError{Component: u.name, Phase: phase, Err: err}
	if u.spec.optional {
		r.giveUp(u, cerr)
		return
	}
	r.record(cerr)
	if u.state == StateStarting {
		r.setState(u, StateFailed)
	}
	r.shutdown(cerr)
}

// giveUp leaves an optional component (or one abandoned during a restart)
// failed, and the Group running without it.
func (r *run) giveUp(u *unit, err error) {
	u.gaveUp = true
	r.setErr(u, err)
	if !u.spec.optional {
		r.record(err)
		r.setState(u, StateFailed)
		r.shutdown(err)
		return
	}
	r.emit(Event{Kind: EventGaveUp, Component: u.name, Err: err})
	if u.state == StateExited {
		r.stopUnit(u)
		return
	}
	r.setState(u, StateFailed)
	r.afterStartFailure(u)
}

// afterStartFailure makes the start phase go on without a component that
// failed to start for good.
func (r *run) afterStartFailure(u *unit) {
	if r.phase == PhaseStarting {
		r.notReady--
		// What needs it cannot start: an optional component's dependents
		// are given up with it.
		for _, d := range u.neededBy {
			if d.state == StateIdle {
				r.giveUp(d, &ComponentError{Component: d.name, Phase: PhaseStarting,
					Err: fmt.Errorf("needs %q, which gave up: %w", u.name, ErrExited)})
			}
		}
		if r.notReady == 0 {
			r.startDone()
		}
	}
}

// backoff waits u's delay before it is started again.
func (r *run) backoff(u *unit) {
	r.setState(u, StateBackoff)
	r.emit(Event{Kind: EventRestarting, Component: u.name, Err: u.lastErr, Attempt: u.restarts + 1, Delay: u.nextDelay})
	r.schedule(timer{at: time.Now().Add(u.nextDelay), kind: timerRestart, u: u, gen: u.gen})
}

// restart starts u again, unless the shutdown has begun.
func (r *run) restart(u *unit, gen int) {
	if u.gen != gen || u.state != StateBackoff || r.cause != nil {
		return
	}
	r.g.mu.Lock()
	u.restarts++
	r.g.mu.Unlock()
	if f := u.spec.restart.New; f != nil {
		var c Component
		err := protect(func() error { c = f(); return nil })
		if err == nil && isNil(c) {
			err = errors.New("RestartPolicy.New returned nil")
		}
		if err != nil {
			r.setState(u, StateStarting)
			r.failed(u, PhaseRunning, err)
			return
		}
		u.c = c
	}
	u.drained = false
	r.launch(u)
}

// lastErrs returns the errors of the last n failures, oldest first.
func lastErrs(fs []failure, n int) []error {
	fs = fs[max(0, len(fs)-n):]
	errs := make([]error, len(fs))
	for i, f := range fs {
		errs[i] = f.err
	}
	return errs
}

// stacksOf returns the stacks of the goroutines labelled with component
// label (and those of the Groups nested in it), at most maxStacks bytes.
func stacksOf(label string) []byte {
	var buf strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return nil
	}
	want1 := fmt.Sprintf("%q:%q", labelKey, label)
	want2 := fmt.Sprintf("%q:%q", labelKey, label+"/")
	want2 = want2[:len(want2)-1]
	var out []byte
	for _, rec := range strings.Split(buf.String(), "\n\n") {
		i := strings.Index(rec, "# labels: ")
		if i < 0 {
			continue
		}
		labels := rec[i:]
		if j := strings.IndexByte(labels, '\n'); j >= 0 {
			labels = labels[:j]
		}
		if !strings.Contains(labels, want1) && !strings.Contains(labels, want2) {
			continue
		}
		if len(out)+len(rec) > maxStacks {
			out = append(out, "...\n"...)
			break
		}
		out = append(out, rec...)
		out = append(out, "\n\n"...)
	}
	return out
}

// maxStacks bounds the stacks carried by one ComponentError.
const maxStacks = 16 << 10

// call calls c.Stop(ctx) if stop, else c.Start(ctx), and turns a panic into a
// *PanicError.
func call(c Component, ctx context.Context, stop bool) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	if stop {
		return c.Stop(ctx)
	}
	return c.Start(ctx)
}

// protect calls fn and turns a panic into a *PanicError.
func protect(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn()
}

// benign reports whether err, returned by a Start after its Stop (or after
// the shutdown began), says no more than that the component was stopped.
func benign(ctx context.Context, err error) bool {
	return err == nil ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, http.ErrServerClosed) ||
		(ctx.Err() != nil && errors.Is(err, context.Cause(ctx)))
}
