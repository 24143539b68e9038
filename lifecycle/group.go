// Package lifecycle supervises the long-running parts of a service process
// and shuts them down gracefully.
//
// A program adds its components (servers, workers, pools, clients) to a
// [Group] in the order they depend on each other, and calls [Group.Run]. Run
// starts the components one by one, each only when the previous one is ready,
// and runs them until the first of: the context is done, a signal arrives, or a
// component fails. Then it shuts down within one deadline: readiness turns
// not-ready and the components are told to drain; after the drain delay they
// are stopped in reverse order; what does not stop by the deadline is
// abandoned and named. Run returns an error that says what went wrong, or nil
// for a clean stop; [ExitCode] turns it into the process's exit code.
//
// A Group is itself a [Component], so the modules of a monolith can each have a
// Group of their own under one parent.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Group starts, runs and stops a set of components. Create one with [New]; a
// zero Group is valid too and has the default options. A Group is run once:
// either by Run, which owns the process (signals, drain delay, shutdown
// timeout), or as a component of another Group, through Start and Stop.
type Group struct {
	mu      sync.Mutex
	cfg     config
	entries []*entry
	names   map[string]struct{}
	addErrs []error

	state    runState
	mode     runMode
	phase    Phase
	phaseAt  time.Time
	ready    chan struct{} // closed when the Group enters PhaseRunning
	shutdown chan struct{} // closed when the shutdown begins
	cause    error         // what began the shutdown

	base         context.Context // the caller's context, without its cancellation
	budget       context.Context // the stop context of Run: detached, with the shutdown deadline
	forceBudget  context.CancelCauseFunc
	cancelBudget context.CancelFunc
	forced       bool
	forceSent    bool // ErrForced already returned by takeErrs

	stopReq      context.Context // the context of the Stop that asked for the shutdown
	stoppedEarly bool            // Stop came before Start: Start returns at once
	startFailed  bool            // Start is stopping what started, and reports
	draining     string          // the component whose Drain is being called
	returned     chan struct{}   // closed when Run returns
	handshake    chan struct{}   // a non-Readier's goroutine tells the start loop it runs
	startDone    chan struct{}   // closed when the start phase has ended
	finishing    bool            // the stop phase was begun
	finished     chan struct{}   // closed when the stop phase has ended
	ended        bool
	errs         []error

	eg errgroup.Group
}

type runState int

const (
	stateIdle   runState = iota
	stateActive          // Run or Start was called
	stateClosed          // ended, or refused to start
)

type runMode int

const (
	modeRun runMode = iota
	modeComponent
)

// entry is one component of the Group and what the Group knows of it.
type entry struct {
	name string
	c    Component

	// Written by the start loop, read by the stop phase after it.
	launched  bool
	stop      bool // Stop must be called: Start was called and did not fail before ready
	readyC    <-chan struct{}
	ctx       context.Context
	cancel    context.CancelCauseFunc
	done      chan struct{} // closed when Start has returned
	startedAt time.Time

	// Guarded by Group.mu.
	isReady    bool
	exited     bool
	stopping   bool
	unreported bool  // Start returned before ready and before Stop, and nobody reported it yet
	err        error // what Start returned; read after done is closed
}

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
		opt(&g.cfg)
	}
	return g
}

// Add adds a component under a name that is unique in the Group. Components
// start in the order they were added and stop in the reverse order. Add returns
// an error matching [ErrInvalid] for an empty or duplicate name, a nil
// component, or a Group that was already run; Run returns the same errors, so a
// caller may leave them to Run.
func (g *Group) Add(name string, c Component) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != stateIdle {
		return invalid("Add(%q) after Run or Start", name)
	}
	var err error
	switch {
	case name == "":
		err = invalid("component with an empty name")
	case isNil(c):
		err = invalid("component %q is nil", name)
	default:
		if _, dup := g.names[name]; dup {
			err = invalid("duplicate component name %q", name)
		}
	}
	if err != nil {
		g.addErrs = append(g.addErrs, err)
		return err
	}
	if g.names == nil {
		g.names = make(map[string]struct{})
	}
	g.names[name] = struct{}{}
	g.entries = append(g.entries, &entry{name: name, c: c})
	return nil
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
// ctx is done, one of the configured signals arrives, a component's Start
// fails, panics or returns, or Stop is called. It blocks until the shutdown has
// ended, and returns no later than the shutdown timeout (counted from the
// moment the shutdown began) plus a fixed grace of 200 ms, whatever the
// components do. A second signal during the shutdown forces it: the stop
// context is cancelled with [ErrForced] and Run returns promptly.
//
// Run returns nil when the shutdown was asked for (ctx, signal, Stop) and
// every component stopped cleanly. Otherwise it returns the errors joined: a
// [*ComponentError] for each failure, [ErrForced] first if the shutdown was
// forced. Configuration errors ([ErrInvalid]) are returned before anything
// starts. After Run returns the signal handlers are unregistered and no
// goroutine of the Group is left, except those still running a component's
// Start or Stop that was abandoned.
func (g *Group) Run(ctx context.Context) error {
	if err := g.begin(ctx, modeRun, "Run"); err != nil {
		return err
	}
	defer close(g.returned)
	stopSignals := g.watchSignals()
	defer stopSignals()
	if g.startAll(ctx) && g.enterRunning() {
		select {
		case <-ctx.Done():
			g.trigger(context.Cause(ctx))
		case <-g.shutdown:
		}
		g.drainFor(g.stopContext(), g.cfg.drainDelay)
	}
	g.finish(g.stopContext())
	stopSignals()
	g.end()
	return g.takeErrs()
}

// Start runs the Group as a component of another Group: it starts the
// components in order (signals are not handled, and the drain delay is the
// parent's), and blocks while they run. [Group.Ready] is closed when all are
// ready. Start returns nil after Stop has stopped them, or the errors at once
// when a component fails, leaving the drain and the stop to the parent. If the
// start fails, Start stops what started (within the Group's own shutdown
// timeout) before it returns the errors. After a Stop before Start, Start
// returns nil at once and starts nothing.
func (g *Group) Start(ctx context.Context) error {
	g.mu.Lock()
	early := g.stoppedEarly
	g.mu.Unlock()
	if early {
		return nil
	}
	if err := g.begin(ctx, modeComponent, "Start"); err != nil {
		return err
	}
	ok := g.startAll(ctx) && g.enterRunning()
	if !ok {
		g.mu.Lock()
		g.startFailed = true
		g.mu.Unlock()
	}
	close(g.startDone)
	if !ok {
		g.finish(g.stopContext())
		g.end()
		return g.takeErrs()
	}
	select {
	case <-ctx.Done():
		g.trigger(context.Cause(ctx))
	case <-g.shutdown:
	}
	g.mu.Lock()
	requested := g.stopReq != nil
	g.mu.Unlock()
	if requested {
		<-g.finished
		return nil
	}
	if ctx.Err() != nil {
		if g.finish(g.stopContext()) {
			g.end()
		}
	}
	return g.takeErrs()
}

// Stop stops the components of a Group run by Start, in reverse order, bounded
// by ctx, and returns their errors joined; it blocks until they have stopped or
// were abandoned. A Stop before Start makes a later Start return at once (and a
// later Run fail with ErrInvalid). For a Group run by Run, Stop begins the
// shutdown as a cancelled context would, and waits until Run has returned or
// ctx is done; Run reports the errors, and its own shutdown timeout bounds the
// stop, whatever ctx is. Do not call it, on a Group run by Run, from a
// component that the Group waits for (a request handler): use a context that
// the handler does not wait on, or call it in a goroutine.
func (g *Group) Stop(ctx context.Context) error {
	g.mu.Lock()
	if g.state != stateActive {
		if g.state == stateIdle {
			g.stoppedEarly = true
		}
		g.state = stateClosed
		g.mu.Unlock()
		return nil
	}
	mode := g.mode
	if g.stopReq == nil {
		g.stopReq = ctx
	}
	g.mu.Unlock()
	g.trigger(errStopRequested)
	if mode == modeRun {
		select {
		case <-g.returned:
		case <-ctx.Done():
		}
		return nil
	}
	<-g.startDone
	g.mu.Lock()
	failed := g.startFailed
	g.mu.Unlock()
	if failed {
		// Start is stopping what started, and reports the errors.
		select {
		case <-g.finished:
			return nil
		case <-ctx.Done():
			return errStillStopping(ctx)
		}
	}
	if !g.finish(ctx) {
		return errors.Join(g.takeErrs(), errStillStopping(ctx))
	}
	g.end()
	return g.takeErrs()
}

// errStillStopping is Stop's error when its ctx ended while another call was
// still stopping the components.
func errStillStopping(ctx context.Context) error {
	err := ErrTimeout
	if errors.Is(context.Cause(ctx), ErrForced) {
		err = ErrForced
	}
	return fmt.Errorf("components still stopping when Stop's context ended: %w", err)
}

// errStopRequested is the cause of a shutdown that Stop asked for.
var errStopRequested = errors.New("lifecycle: Stop called")

// Drain turns the Group's readiness off and tells the components that
// implement [Drainer] that the drain has begun. Run calls it when the shutdown
// begins; a parent Group calls it for a nested one. It does nothing unless the
// Group is running, and calls each Drainer at most once. It blocks as long as
// the components' Drain methods do (they must not block); Run bounds that wait
// by the shutdown deadline.
func (g *Group) Drain() {
	if g.beginDrain() {
		g.drainHooks()
	}
}

// beginDrain turns readiness off: it moves a running Group to PhaseDraining
// and reports whether it did (once only).
func (g *Group) beginDrain() bool {
	g.mu.Lock()
	running := g.phase == PhaseRunning
	if running {
		g.phase = PhaseDraining
	}
	g.mu.Unlock()
	if running {
		g.phaseChanged(PhaseDraining)
	}
	return running
}

// drainHooks calls the Drain method of the components that have one, in
// reverse order.
func (g *Group) drainHooks() {
	for i := len(g.entries) - 1; i >= 0; i-- {
		e := g.entries[i]
		d, ok := e.c.(Drainer)
		if !ok || !e.stop {
			continue
		}
		g.mu.Lock()
		g.draining = e.name
		g.mu.Unlock()
		if err := protect(func() error { d.Drain(); return nil }); err != nil {
			g.record(&ComponentError{Component: e.name, Phase: PhaseDraining, Err: err})
		}
	}
}

// drainFor drains the Group and keeps it serving for delay, counted from the
// moment readiness turned off; it returns early when ctx is done. A Drain method
// that has not returned when ctx is done is abandoned and named.
func (g *Group) drainFor(ctx context.Context, delay time.Duration) {
	began := g.beginDrain()
	if !began && g.Phase() != PhaseDraining {
		return // never ran
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		if began { // else Drain was called already, and ran the hooks
			g.drainHooks()
		}
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		// Drain must not block: one still running at the deadline is
		// abandoned at once, leaving the whole grace to the stop phase.
		select {
		case <-drained:
		default:
			g.mu.Lock()
			name := g.draining
			g.mu.Unlock()
			cerr := &ComponentError{Component: name, Phase: PhaseDraining, Err: abandonErr(ctx, "Drain did not return")}
			g.record(cerr)
			g.emit(Event{Kind: EventAbandoned, Component: name, Err: cerr})
		}
		return
	}
	if delay > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
		}
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
// context passed to Run, a component's [*ComponentError], or the error of a
// start that failed. It returns nil until the shutdown begins.
func (g *Group) Cause() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cause
}

// ReadyHandler returns an http.Handler for a readiness probe (Kubernetes
// /readyz): 200 "ok" while the Group is running, 503 "not ready: <phase>"
// before and from the first moment of the drain.
func (g *Group) ReadyHandler() http.Handler {
	return healthHandler(g, "not ready: ", func(p Phase) bool { return p == PhaseRunning })
}

// LiveHandler returns an http.Handler for a liveness probe (Kubernetes
// /livez): 200 "ok" until the Group has stopped, 503 "not live: stopped"
// after. Draining and stopping are alive: the orchestrator must not kill the
// process for shutting down.
func (g *Group) LiveHandler() http.Handler {
	return healthHandler(g, "not live: ", func(p Phase) bool { return p != PhaseStopped })
}

func healthHandler(g *Group, notOK string, ok func(Phase) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p := g.Phase()
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		if ok(p) {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, notOK+p.String()+"\n")
	})
}

func (g *Group) lazyInit() {
	if g.ready == nil {
		g.ready = make(chan struct{})
	}
}

// begin checks the configuration and moves the Group from idle to active.
func (g *Group) begin(ctx context.Context, mode runMode, verb string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case stateActive:
		return invalid("%s called on a Group that is already running", verb)
	case stateClosed:
		return invalid("%s called on a Group that has ended or was stopped", verb)
	}
	g.state = stateClosed // unless all is well below
	g.lazyInit()
	if errs := append(g.cfg.resolve(), g.addErrs...); len(errs) > 0 {
		return errors.Join(errs...)
	}
	g.state = stateActive
	g.mode = mode
	g.base = context.WithoutCancel(ctx)
	g.shutdown = make(chan struct{})
	g.startDone = make(chan struct{})
	g.finished = make(chan struct{})
	g.returned = make(chan struct{})
	g.handshake = make(chan struct{})
	g.phaseAt = time.Now()
	return nil
}

// watchSignals handles the configured signals until the returned function is
// called (once or more): the first begins the shutdown, the second forces it.
func (g *Group) watchSignals() (stop func()) {
	if len(g.cfg.signals) == 0 {
		return func() {}
	}
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, g.cfg.signals...)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for n := 1; ; n++ {
			select {
			case s := <-ch:
				if n == 1 {
					g.trigger(&SignalError{Signal: s})
				} else {
					g.force()
				}
			case <-quit:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(ch)
			close(quit)
			<-done
		})
	}
}

// trigger begins the shutdown with cause, unless it has begun already, and
// starts the shutdown budget.
func (g *Group) trigger(cause error) {
	if cause == nil {
		cause = context.Canceled
	}
	g.mu.Lock()
	if g.cause != nil {
		g.mu.Unlock()
		return
	}
	g.cause = cause
	ctx, force := context.WithCancelCause(g.base)
	g.budget, g.cancelBudget = context.WithDeadlineCause(ctx, time.Now().Add(g.cfg.shutdownTimeout), ErrTimeout)
	g.forceBudget = force
	close(g.shutdown)
	g.mu.Unlock()
	g.emit(Event{Kind: EventShutdown, Err: cause})
}

// force cuts the shutdown short: the stop context is cancelled with ErrForced.
func (g *Group) force() {
	select {
	case <-g.finished:
		return // nothing left to cut short
	default:
	}
	g.mu.Lock()
	if g.forced || g.forceBudget == nil {
		g.mu.Unlock()
		return
	}
	g.forced = true
	g.mu.Unlock()
	g.forceBudget(ErrForced)
	g.emit(Event{Kind: EventForced, Err: ErrForced})
}

// stopContext is the context of the stop phase: for a Group run as a
// component, that of the Stop that asked for the shutdown; else the shutdown
// budget.
func (g *Group) stopContext() context.Context {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mode == modeComponent && g.stopReq != nil {
		return g.stopReq
	}
	return g.budget
}

func (g *Group) setPhase(p Phase) {
	g.mu.Lock()
	if p <= g.phase {
		g.mu.Unlock()
		return
	}
	g.phase = p
	g.mu.Unlock()
	g.phaseChanged(p)
}

// phaseChanged emits the event of a move to phase p, already made.
func (g *Group) phaseChanged(p Phase) {
	g.mu.Lock()
	now := time.Now()
	took := now.Sub(g.phaseAt)
	g.phaseAt = now
	g.mu.Unlock()
	g.emit(Event{Kind: EventPhase, Phase: p, Duration: took})
}

// enterRunning moves the Group to PhaseRunning and closes Ready, unless the
// shutdown has begun; it reports whether it did.
func (g *Group) enterRunning() bool {
	g.mu.Lock()
	if g.cause != nil {
		g.mu.Unlock()
		return false
	}
	g.phase = PhaseRunning
	close(g.ready)
	g.mu.Unlock()
	g.phaseChanged(PhaseRunning)
	return true
}

func (g *Group) record(err error) {
	g.mu.Lock()
	g.errs = append(g.errs, err)
	g.mu.Unlock()
}

// takeErrs returns the errors recorded so far, joined, and forgets them.
func (g *Group) takeErrs() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	errs := g.errs
	g.errs = nil
	if g.forced && !g.forceSent {
		g.forceSent = true
		errs = append([]error{ErrForced}, errs...)
	}
	return errors.Join(errs...)
}

// startAll starts the components in order. It returns true when all are
// ready, and false, with the shutdown begun, when the start did not complete.
func (g *Group) startAll(ctx context.Context) bool {
	g.setPhase(PhaseStarting)
	var timeout <-chan time.Time
	if d := g.cfg.startTimeout; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	base := g.base
	for _, e := range g.entries {
		select {
		case <-g.shutdown:
			return false
		case <-ctx.Done():
			g.trigger(context.Cause(ctx))
			return false
		default:
		}
		if err := g.launch(base, e); err != nil {
			g.failStart(e, err)
			return false
		}
		if e.readyC != nil && !g.awaitReady(ctx, e, timeout) {
			return false
		}
	}
	return true
}

// launch calls e's Start in a goroutine of the errgroup. For a component that
// is not a Readier, it returns when that goroutine is running, about to call
// Start: the component is then ready.
func (g *Group) launch(base context.Context, e *entry) error {
	if r, ok := e.c.(Readier); ok {
		if err := protect(func() error { e.readyC = r.Ready(); return nil }); err != nil {
			return err
		}
	}
	e.ctx, e.cancel = context.WithCancelCause(base)
	e.done = make(chan struct{})
	e.launched, e.stop = true, true
	e.isReady = e.readyC == nil // set before the goroutine exists: no lock needed
	g.emit(Event{Kind: EventStarting, Component: e.name})
	e.startedAt = g.clock()
	g.eg.Go(func() error {
		if e.readyC == nil {
			g.handshake <- struct{}{}
		}
		err := call(e.c, e.ctx, false)
		g.exited(e, err)
		return nil
	})
	if e.readyC == nil {
		<-g.handshake
		g.emit(Event{Kind: EventReady, Component: e.name, Duration: since(e.startedAt)})
	}
	return nil
}

// awaitReady waits until e is ready. It returns false, with the shutdown
// begun, if e's Start returned first, the start timeout ran out, or the
// shutdown began.
func (g *Group) awaitReady(ctx context.Context, e *entry, timeout <-chan time.Time) bool {
	select {
	case <-e.readyC:
		g.mu.Lock()
		exited := e.exited
		e.isReady = !exited
		g.mu.Unlock()
		if !exited {
			g.emit(Event{Kind: EventReady, Component: e.name, Duration: since(e.startedAt)})
			return true
		}
	case <-e.done:
	case <-timeout:
		err := &ComponentError{Component: e.name, Phase: PhaseStarting,
			Err: fmt.Errorf("not ready within the start timeout %v: %w", g.cfg.startTimeout, ErrTimeout)}
		g.record(err)
		g.trigger(err)
		return false
	case <-g.shutdown:
		return false
	case <-ctx.Done():
		g.trigger(context.Cause(ctx))
		return false
	}
	// Start returned before the start loop saw the component ready. If it had
	// closed its Ready channel first, it started and is stopped; if not, it
	// failed to start and is not.
	<-e.done
	select {
	case <-e.readyC:
	default:
		e.stop = false
	}
	g.mu.Lock()
	e.unreported = false // reported here
	g.mu.Unlock()
	err := e.err
	if err == nil {
		err = fmt.Errorf("Start returned before the component was ready: %w", ErrExited)
	}
	g.failStart(e, err)
	return false
}

func (g *Group) failStart(e *entry, err error) {
	cerr := &ComponentError{Component: e.name, Phase: PhaseStarting, Err: err}
	g.record(cerr)
	g.trigger(cerr)
}

// exited records that e's Start returned err. A return while the Group is
// running, or before the component's Stop was called, shuts the Group down.
func (g *Group) exited(e *entry, err error) {
	g.mu.Lock()
	e.err = err
	e.exited = true
	stopping := e.stopping
	report := e.isReady && !stopping
	e.unreported = !report && !stopping
	phase := g.phase
	g.mu.Unlock()
	close(e.done)
	g.emit(Event{Kind: EventExited, Component: e.name, Err: err})
	switch {
	case stopping:
		if !benign(e.ctx, err) {
			g.record(&ComponentError{Component: e.name, Phase: PhaseStopping, Err: err})
		}
	case report:
		if err == nil {
			err = ErrExited
		}
		cerr := &ComponentError{Component: e.name, Phase: phase, Err: err}
		g.record(cerr)
		g.trigger(cerr)
	}
}

// benign reports whether err, returned by a Start after its Stop, says no more
// than that the component was stopped.
func benign(ctx context.Context, err error) bool {
	return err == nil ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, http.ErrServerClosed) ||
		(ctx.Err() != nil && errors.Is(err, context.Cause(ctx)))
}

// finish runs the stop phase once; a second caller waits for it to end or for
// its ctx to be done. It reports whether the stop phase has ended.
func (g *Group) finish(ctx context.Context) bool {
	g.mu.Lock()
	if g.finishing {
		g.mu.Unlock()
		select {
		case <-g.finished:
			return true
		case <-ctx.Done():
			return false
		}
	}
	g.finishing = true
	g.mu.Unlock()
	g.stopAll(ctx)
	close(g.finished)
	return true
}

// end moves the Group to PhaseStopped and releases what the run held.
func (g *Group) end() {
	g.mu.Lock()
	if g.ended {
		g.mu.Unlock()
		return
	}
	g.ended = true
	cause := g.cause
	g.mu.Unlock()
	g.setPhase(PhaseStopped)
	all := true
	for _, e := range g.entries {
		if !e.launched {
			continue
		}
		e.cancel(cause)
		select {
		case <-e.done:
		default:
			all = false
		}
	}
	if all {
		_ = g.eg.Wait() // every Start has returned: this does not block
	}
	g.mu.Lock()
	if g.cancelBudget != nil {
		g.cancelBudget()
		g.forceBudget(nil)
	}
	g.state = stateClosed
	g.mu.Unlock()
}

// call calls c.Stop(ctx) if stop, else c.Start(ctx), and turns a panic into a
// *PanicError. Unlike protect, it allocates no closure.
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
