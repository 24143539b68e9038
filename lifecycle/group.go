// Package lifecycle supervises the long-running parts of a service process
// and shuts them down gracefully.
//
// A program adds its components (servers, workers, pools, clients) to a
// [Group], says what each needs ([After]), and calls [Group.Run]. Run starts
// each component as soon as everything it needs is ready, unrelated ones
// concurrently, and runs them until the first of: the context is done, a
// signal arrives, [Group.Shutdown] is called, or a component fails. Then it
// shuts down within one deadline: readiness turns not-ready and the
// components are told to drain; after the drain delay they are stopped, each
// only after everything that needs it has stopped; what does not stop in its
// time is abandoned and named. Run returns an error that says what went
// wrong, or nil for a clean stop; [ExitCode] turns it into the process's exit
// code.
//
// # Budgets
//
// The shutdown budget ([WithShutdownTimeout]) is one deadline, counted from
// the moment the shutdown begins, that covers the drain delay and every
// component's stop; Run returns within it, whatever the components do.
// Inside it, what stops last is protected from what stops first: each
// component's stop ends at the deadline less a reserve for the components
// that still have to stop after it (those it needs, and what they need).
// Each component reserves its [StopTimeout], or a tenth of the budget if it
// has none. When a chain's reserves add up to more than half the budget,
// they are all scaled down in proportion: no reserve is more than half the
// budget, and each component along a chain still has time of its own. A component that
// has not stopped at the end of its time is abandoned, and the components
// after it are stopped with a live context and time of their own. A
// component's Stop context is done a little before its end (a fifth of its
// time, at most 200 ms), which is the time it has to close hard.
//
// # Supervision
//
// A component's failure shuts the Group down, unless it has a [Restart]
// policy (it is stopped, then started again after a backoff, within an
// intensity limit) or is [Optional] (when it gives up, the Group runs on
// without it, degraded). [Group.Status] and the verbose health handlers say
// where each component is; an abandoned component's [ComponentError] carries
// the stacks of its own goroutines.
//
// # Nesting
//
// A Group is itself a [Component], so the modules of a monolith can each have a
// Group of their own under one parent.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Group starts, runs and stops a set of components. Create one with [New]; a
// zero Group is valid too and has the default options. A Group is run once:
// either by Run, which owns the process (signals, drain delay, shutdown
// timeout), or as a component of another Group, through Start and Stop.
//
// All methods are safe to call from any goroutine.
type Group struct {
	mu       sync.Mutex
	cfg      config
	units    []*unit
	byName   map[string]*unit
	addErrs  []error
	prepared bool    // prepare has run: errs below are its verdict
	prepErrs []error // configuration errors found by prepare
	inPrep   bool    // prepare is running (a Group added to itself)

	state    groupState
	mode     runMode
	r        *run
	phase    Phase
	cause    error
	ready    chan struct{} // closed when the Group enters PhaseRunning
	wake     chan struct{} // a request is waiting for the loop (buffered, 1)
	returned chan struct{} // closed when Run (or the run as a component) has returned
	req      request       // what other goroutines asked of the loop
	errs     []error       // what went wrong, for Run, Start or Stop to return
	health   bool          // ReadyHandler was called: readiness has a consumer
	early    bool          // Stop was called before Start: Start returns at once
	stopSeen bool          // a Stop of the Group run as a component was taken
	forced   bool          // the shutdown was forced
	forceOut bool          // ErrForced was returned already

	eg errgroup.Group
}

// groupState is where a Group is in its single use.
type groupState int

const (
	groupIdle   groupState = iota // before Run or Start: Add allowed
	groupActive                   // Run or Start was called and has not ended
	groupEnded                    // ended, refused to start, or stopped before it started
)

var (
	_ Component = (*Group)(nil)
	_ Readier   = (*Group)(nil)
	_ Drainer   = (*Group)(nil)
)

// New returns a Group configured by opts. Invalid options are reported by Run
// (or Start), before anything starts.
func New(opts ...Option) *Group {
	g := &Group{}
	for _, opt := range opts {
		if opt != nil {
			opt(&g.cfg)
		}
	}
	return g
}

// Add adds a component under a name that is unique in the Group, with
// options that say what it needs ([After]), how long it may take to stop
// ([StopTimeout]) and how it is supervised ([Restart], [Optional]).
//
// Add does not fail: an empty or duplicate name, a nil component, an invalid
// option, or a call after Run is a configuration error that Run (or Start)
// returns, matching [ErrInvalid], before anything starts.
func (g *Group) Add(name string, c Component, opts ...AddOption) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != groupIdle {
		g.addErrs = append(g.addErrs, invalid("Add(%q) after Run or Start", name))
		return
	}
	u := &unit{name: name, c: c}
	for _, opt := range opts {
		if opt != nil {
			opt(&u.spec)
		}
	}
	var errs []error
	switch {
	case name == "":
		errs = append(errs, invalid("a component has an empty name"))
	case isNil(c):
		errs = append(errs, invalid("component %q is nil", name))
	default:
		if _, dup := g.byName[name]; dup {
			errs = append(errs, invalid("duplicate component name %q", name))
		}
	}
	for _, err := range u.spec.errs {
		errs = append(errs, fmt.Errorf("component %q: %w", name, err))
	}
	if len(errs) > 0 {
		g.addErrs = append(g.addErrs, errs...)
		return
	}
	if g.byName == nil {
		g.byName = make(map[string]*unit)
	}
	g.byName[name] = u
	g.units = append(g.units, u)
}

func isNil(c Component) bool {
	if c == nil {
		return true
	}
	v := reflect.ValueOf(c)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// Run starts the components, runs them, and shuts them down on the first of:
// ctx is done, one of the configured signals arrives, [Group.Shutdown] or
// [Group.Stop] is called, or a component's Start fails, panics or returns.
// It blocks until the shutdown has ended, and returns within the shutdown
// timeout (counted from the moment the shutdown began), whatever the
// components do. A second signal during the shutdown forces it: every stop
// context is cancelled with [ErrForced] and Run returns promptly.
//
// Run returns nil when the shutdown was asked for (ctx, signal, Shutdown,
// Stop) and every component stopped cleanly. Otherwise it returns the errors
// joined: a [*ComponentError] for each failure, [ErrForced] first if the
// shutdown was forced. Configuration errors ([ErrInvalid]) are returned before
// anything starts. After Run returns the signal handlers are unregistered and
// no goroutine of the Group is left, except those still running a
// component's Start, Stop or Drain that was abandoned, which the error names.
func (g *Group) Run(ctx context.Context) error {
	r, err := g.begin(ctx, modeRun, "Run")
	if err != nil {
		return err
	}
	defer close(g.returned)
	began := time.Now()
	r.logStart()
	r.loop(ctx)
	err = g.takeErrs()
	r.logSummary(err, began)
	return err
}

// Start runs the Group as a component of another Group: it starts the
// components (signals are not handled, and the drain delay is the
// parent's), and blocks while they run. [Group.Ready] is closed when all are
// ready. Start returns nil after Stop has stopped them, or the errors at once
// when a component fails, leaving the drain and the stop to the parent. If the
// start fails, Start stops what started (within the Group's own shutdown
// timeout) before it returns the errors. After a Stop before Start, Start
// returns nil at once and starts nothing.
func (g *Group) Start(ctx context.Context) error {
	g.mu.Lock()
	early := g.early
	g.mu.Unlock()
	if early {
		return nil // stopped before it started
	}
	r, err := g.begin(ctx, modeComponent, "Start")
	if err != nil {
		return err
	}
	go func() {
		defer close(g.returned)
		r.loop(ctx)
	}()
	select {
	case <-r.over:
		if r.stopReq != nil {
			return nil // Stop reports
		}
		<-g.returned
		return g.takeErrs()
	case <-r.toStop:
		return g.takeErrs()
	}
}

// Stop stops the components of a Group run by Start, each after what needs
// it, bounded by ctx (its deadline is the Group's budget; its cancellation
// forces the stop), and returns their errors joined. It blocks until they
// have stopped or were abandoned. A Stop before Start makes a later Start
// return at once (and a later Run fail with ErrInvalid). A second Stop
// returns nil.
//
// For a Group run by Run, Stop begins the shutdown as [Group.Shutdown] does,
// then waits until Run has returned or ctx is done, and returns nil: Run
// reports the errors, and the Group's own shutdown timeout bounds the stop.
// Called from inside the Group (a request handler or worker whose context
// comes from the Group), it does not wait, since Run waits for its caller.
func (g *Group) Stop(ctx context.Context) error {
	g.mu.Lock()
	g.lazyInit()
	switch g.state {
	case groupIdle:
		g.state, g.early = groupEnded, true
		g.mu.Unlock()
		return nil
	case groupEnded:
		g.mu.Unlock()
		return nil
	}
	r, mode := g.r, g.mode
	first := false
	if mode == modeRun {
		if g.req.cause == nil {
			g.req.cause = errStopRequested
		}
	} else if !g.stopSeen {
		g.req.stop, g.stopSeen, first = ctx, true, true
	}
	g.mu.Unlock()
	g.poke()
	if mode == modeRun {
		if inside(ctx, g) {
			return nil // from inside: Run waits for the caller
		}
		select {
		case <-g.returned:
		case <-ctx.Done():
		}
		return nil
	}
	select {
	case <-r.over:
	case <-ctx.Done():
		// The loop is forced: it ends within forceGrace.
		t := time.NewTimer(forceGrace + maxHardGrace)
		select {
		case <-r.over:
		case <-t.C:
		}
		t.Stop()
	}
	if !first {
		return nil
	}
	select {
	case <-r.over:
		return g.takeErrs()
	default:
		return errors.Join(g.takeErrs(), fmt.Errorf("components still stopping when Stop's context ended: %w", ErrTimeout))
	}
}

// Shutdown begins the shutdown, with cause as its cause ([Group.Cause]), and
// returns at once, without waiting for anything: it is safe to call from any
// goroutine, including a request handler or a component of the Group. A nil
// cause stands for "shutdown requested". Only the first cause counts; a call
// after the shutdown has begun, or after Run returned, does nothing. Called
// before Run, it makes Run start nothing and return nil.
//
// A Run that ends this way returns nil if every component stopped cleanly.
func (g *Group) Shutdown(cause error) {
	if cause == nil {
		cause = errShutdownRequested
	}
	g.mu.Lock()
	g.lazyInit()
	if g.req.cause == nil {
		g.req.cause = cause
	}
	g.mu.Unlock()
	g.poke()
}

// poke wakes the loop to take the requests.
func (g *Group) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// errStopRequested is the cause of a shutdown that Stop asked for, and
// errShutdownRequested of one that Shutdown asked for without a cause.
var (
	errStopRequested     = errors.New("lifecycle: Stop called")
	errShutdownRequested = errors.New("lifecycle: shutdown requested")
)

// Drain turns the Group's readiness off and tells the components that
// implement [Drainer] that the drain has begun. A parent Group calls it for a
// nested one. It does nothing unless the Group is running, calls each Drainer
// at most once, and returns at once: the Drain methods run on goroutines of
// the Group.
func (g *Group) Drain() {
	g.mu.Lock()
	active := g.state == groupActive
	if active {
		g.req.drain = true
	}
	g.mu.Unlock()
	if active {
		g.poke()
	}
}

// Ready returns a channel that is closed when every component is ready and
// the Group is running. It makes a Group a [Readier].
func (g *Group) Ready() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lazyInit()
	return g.ready
}

// Phase returns the Group's current phase.
func (g *Group) Phase() Phase {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.phase
}

// Cause returns what began the shutdown: a [*SignalError], the cause of the
// context passed to Run, the cause given to [Group.Shutdown], a component's
// [*ComponentError], or the error of a start that failed. It returns nil
// until the shutdown begins.
func (g *Group) Cause() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cause
}

func (g *Group) lazyInit() {
	if g.ready == nil {
		g.ready = make(chan struct{})
		g.wake = make(chan struct{}, 1)
		g.returned = make(chan struct{})
	}
}

// prepare checks the configuration of the Group and of the Groups nested in
// it, and builds the dependency graph. It runs once; its verdict stays.
func (g *Group) prepare() []error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.prepared {
		return g.prepErrs
	}
	if g.inPrep {
		return []error{invalid("a Group is a component of itself")}
	}
	g.inPrep = true
	errs := append(g.cfg.resolve(), g.addErrs...)
	if len(errs) == 0 {
		errs = link(g.units, g.byName)
	}
	for _, u := range g.units {
		if st := u.spec.stopTimeout; st > g.cfg.shutdownTimeout {
			errs = append(errs, invalid("component %q: StopTimeout(%v) is longer than the shutdown timeout %v", u.name, st, g.cfg.shutdownTimeout))
		}
		if p := u.spec.restart; p != nil && p.New == nil {
			if _, ok := u.c.(restartable); !ok {
				errs = append(errs, invalid("component %q cannot be started again: give its RestartPolicy a New function", u.name))
			}
		}
		if child, ok := u.c.(*Group); ok {
			g.mu.Unlock()
			cerrs := child.prepare()
			g.mu.Lock()
			for _, err := range cerrs {
				errs = append(errs, fmt.Errorf("component %q: %w", u.name, err))
			}
		}
	}
	g.inPrep = false
	g.prepared, g.prepErrs = true, errs
	return errs
}

// drains reports whether the Group has something to drain: a Drainer, a
// nested Group that has one, or a readiness handler.
func (g *Group) drains() bool {
	g.mu.Lock()
	health := g.health
	g.mu.Unlock()
	if health {
		return true
	}
	for _, u := range g.units {
		if child, ok := u.c.(*Group); ok {
			if child.drains() {
				return true
			}
			continue
		}
		if _, ok := u.c.(Drainer); ok {
			return true
		}
	}
	return false
}

// begin checks the configuration and moves the Group from idle to active.
func (g *Group) begin(ctx context.Context, mode runMode, verb string) (*run, error) {
	g.mu.Lock()
	g.lazyInit()
	switch g.state {
	case groupActive:
		g.mu.Unlock()
		return nil, invalid("%s called on a Group that is already running", verb)
	case groupEnded:
		g.mu.Unlock()
		return nil, invalid("%s called on a Group that has ended or was stopped", verb)
	}
	g.state = groupEnded // unless all is well below
	g.mu.Unlock()
	if errs := g.prepare(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.state = groupActive
	g.mode = mode
	g.r = newRun(g, ctx, mode)
	g.r.phaseAt = time.Now()
	return g.r, nil
}

// takeErrs returns the errors recorded so far, joined, and forgets them.
func (g *Group) takeErrs() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	errs := g.errs
	g.errs = nil
	if g.forced && !g.forceOut {
		g.forceOut = true
		errs = append([]error{ErrForced}, errs...)
	}
	if g.phase == PhaseStopped {
		g.state = groupEnded
	}
	return errors.Join(errs...)
}
