package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Component is a long-running part of a service: a server, a worker, a pool.
//
// Start runs the component for its whole life. It blocks until the component
// has ended and returns nil when it ended because Stop was called (or because
// ctx was cancelled). A Start that returns while the Group is running is a
// failure: the Group shuts down and reports the component, with [ErrExited]
// when Start returned nil (unless the component is restarted or optional:
// see [Restart] and [Optional]).
//
// Stop asks the component to end and blocks until it has, or until ctx is done.
// When ctx is done (the component's time in the shutdown budget ran out, or a
// repeated signal forced the shutdown), Stop should close what is left hard and
// return at once. The Group calls Stop exactly once for every Start that did
// not fail before the component was ready, even when ctx is already done;
// never for one that failed before it was ready; and Stop may come while
// Start is still starting (it must then make Start return). A Stop before its
// Start has run a line must be safe too: the Group may stop a component whose
// Start goroutine has not yet been scheduled.
//
// The context passed to Start is not cancelled when the shutdown begins: it is
// cancelled, with the shutdown's cause, after the component's Stop has returned
// or been abandoned. A component must therefore end when Stop is called; it may
// also watch ctx as a last resort.
type Component interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Readier is implemented by a component that can tell when it is ready to
// serve (a server whose listener is bound, a pool with its first connection).
// The components that need it start only after Ready's channel is closed.
// A component that does not implement Readier is ready once its Start is
// about to be called. A Ready that returns a nil channel means the component
// is ready at once.
//
// The Group calls Ready on its own goroutine just before each Start, so Ready
// may block without holding the Group up (the start timeout bounds it). It
// must return the channel for the Start that follows. The channel is closed
// once, when the component is ready; a Start that fails before it is ready
// returns its error instead.
type Readier interface {
	Ready() <-chan struct{}
}

// Drainer is implemented by a component that wants to know when the Group
// begins to drain: readiness has just turned not-ready, and the component is
// still serving for the drain delay. An HTTP server can answer with
// "Connection: close" from then on; a gRPC server can report NOT_SERVING.
//
// Drain is called at most once per run, before Stop, on a goroutine of the
// Group, and must not block: a Drain that has not returned shortly after the
// drain delay is abandoned and named, and the stop goes on.
type Drainer interface {
	Drain()
}

// restartable is implemented by the adapters of this package, whose Start
// may be called again after Stop: a [Restart] policy needs no New function
// for them.
type restartable interface{ restartable() }

// turns counts the Starts and Stops of an adapter, so that the k-th Stop
// acts on the k-th Start even when it comes first (a Stop before its Start
// makes that Start return at once).
type turns struct {
	mu     sync.Mutex
	starts int
	stops  int
}

// begin counts a Start and reports whether it is to run (its Stop has not
// come first). mu is held.
func (t *turns) begin() bool {
	t.starts++
	return t.starts > t.stops
}

// end counts a Stop and reports whether its Start has begun. mu is held.
func (t *turns) end() bool {
	t.stops++
	return t.stops <= t.starts
}

// Func returns a Component that runs fn as a background worker.
//
// Start calls fn with a context that is cancelled, with cause [ErrStopped],
// when Stop is called, and returns what fn returns; nil, context.Canceled or
// the context's cause after the cancellation count as a clean stop. Stop
// cancels that context and waits until fn has returned or ctx is done; it
// returns nil. A fn that hands its context to the work in hand therefore
// has it cancelled at Stop: use [Worker] for work that should complete.
//
// The component is ready once fn is being called: a Group stopped the moment
// it runs has called fn. After a Stop before Start, fn is not called. It may
// be started again after Stop (see [Restart]): each Start calls fn anew.
func Func(fn func(ctx context.Context) error) Component {
	return &funcComponent{fn: fn}
}

type funcComponent struct {
	fn func(ctx context.Context) error

	turns
	cancel context.CancelCauseFunc // of the running fn
	done   chan struct{}           // closed when the running fn has returned
}

func (f *funcComponent) restartable() {}

func (f *funcComponent) Start(ctx context.Context) error {
	f.mu.Lock()
	if !f.begin() {
		f.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	f.cancel, f.done = cancel, done
	f.mu.Unlock()
	defer close(done)
	defer cancel(nil)
	reportReady(ctx)
	err := f.fn(ctx)
	if err != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.Cause(ctx))) {
		err = nil
	}
	return err
}

func (f *funcComponent) Stop(ctx context.Context) error {
	f.mu.Lock()
	if !f.end() {
		f.mu.Unlock()
		return nil // before its Start: that Start returns at once
	}
	cancel, done := f.cancel, f.done
	f.mu.Unlock()
	cancel(ErrStopped)
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// Worker returns a Component that runs fn as a worker that finishes the work
// in hand when it is stopped.
//
// Start calls fn with a context and a channel, stopping, and returns what fn
// returns. Stop closes stopping: from then on fn takes no new work, finishes
// what it holds, and returns. ctx stays live while it does, until the
// component's time to stop runs out (its Stop context is done): then ctx is
// cancelled with that context's cause ([ErrTimeout], or [ErrForced]), so that
// the work in hand is cut short and can be handed back. Stop waits until fn
// has returned; it returns nil if fn returned in time, and an error matching
// the cause otherwise. A fn that returns nil, or ctx's error once ctx is
// cancelled, has stopped cleanly.
//
// The component is ready once fn is being called. After a Stop before
// Start, fn is not called. It may be started again after Stop (see
// [Restart]): each Start calls fn anew.
func Worker(fn func(ctx context.Context, stopping <-chan struct{}) error) Component {
	return &workerComponent{fn: fn}
}

type workerComponent struct {
	fn func(ctx context.Context, stopping <-chan struct{}) error

	turns
	cancel   context.CancelCauseFunc
	stopping chan struct{}
	done     chan struct{}
}

func (w *workerComponent) restartable() {}

func (w *workerComponent) Start(ctx context.Context) error {
	w.mu.Lock()
	if !w.begin() {
		w.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stopping, done := make(chan struct{}), make(chan struct{})
	w.cancel, w.stopping, w.done = cancel, stopping, done
	w.mu.Unlock()
	defer close(done)
	defer cancel(nil)
	reportReady(ctx)
	err := w.fn(ctx, stopping)
	if err != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.Cause(ctx))) {
		err = nil
	}
	return err
}

func (w *workerComponent) Stop(ctx context.Context) error {
	w.mu.Lock()
	if !w.end() {
		w.mu.Unlock()
		return nil
	}
	cancel, stopping, done := w.cancel, w.stopping, w.done
	w.mu.Unlock()
	close(stopping)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	cause := context.Cause(ctx)
	cancel(cause)
	<-done
	return fmt.Errorf("worker still busy when its time to stop ran out; its context was cancelled: %w", cause)
}

// Hooks returns a Component for a resource that is opened and closed rather
// than run, such as a connection pool or a client.
//
// Start calls start (when it is not nil) and returns its error if it fails.
// Otherwise the component is ready, and Start blocks until Stop is called or
// ctx is done. Stop calls stop (when it is not nil) with its ctx and returns
// its error. A Stop that comes while start is still running cancels start's
// context and waits for it to return (or for its own ctx); stop is called
// only if start succeeded. After a Stop before Start, neither start nor stop
// is called. It may be started again after Stop (see [Restart]).
func Hooks(start, stop func(ctx context.Context) error) Component {
	return &hooksComponent{start: start, stop: stop}
}

// OnStop returns a Component that does nothing until it is stopped, then
// calls stop with the Stop's context: the shape of the shutdown functions
// of OpenTelemetry providers and of http.Server.Shutdown. It is
// Hooks(nil, stop).
func OnStop(stop func(ctx context.Context) error) Component {
	return Hooks(nil, stop)
}

// Closer returns a Component that closes c when it is stopped, such as a
// *sql.DB or a client. Close is not given the Stop's deadline: a Close that
// blocks past it is abandoned like any Stop.
func Closer(c io.Closer) Component {
	return CloseFunc(c.Close)
}

// CloseFunc returns a Component that calls close when it is stopped.
func CloseFunc(close func() error) Component {
	return Hooks(nil, func(context.Context) error { return close() })
}

type hooksComponent struct {
	start, stop func(ctx context.Context) error

	turns
	cur *hooksTurn // of the running Start
}

// hooksTurn is one Start of a hooksComponent.
type hooksTurn struct {
	quit    chan struct{} // closed by Stop
	opened  chan struct{} // closed when start has returned; openErr is its error
	openErr error
	cancel  context.CancelFunc // of start's context
}

func (h *hooksComponent) restartable() {}

func (h *hooksComponent) Start(ctx context.Context) error {
	h.mu.Lock()
	if !h.begin() {
		h.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &hooksTurn{quit: make(chan struct{}), opened: make(chan struct{}), cancel: cancel}
	h.cur = t
	h.mu.Unlock()
	defer cancel()
	if h.start != nil {
		func() {
			t.openErr = errOpenPanicked // unless start returns
			defer close(t.opened)
			t.openErr = h.start(ctx)
		}()
	} else {
		close(t.opened)
	}
	if t.openErr != nil {
		return t.openErr
	}
	reportReady(ctx)
	select {
	case <-t.quit:
	case <-ctx.Done():
	}
	return nil
}

func (h *hooksComponent) Stop(ctx context.Context) error {
	h.mu.Lock()
	if !h.end() {
		h.mu.Unlock()
		return nil
	}
	t := h.cur
	h.mu.Unlock()
	close(t.quit)
	select {
	case <-t.opened:
	default:
		t.cancel() // start is still running: tell it
		select {
		case <-t.opened:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	if t.openErr != nil || h.stop == nil {
		return nil
	}
	return h.stop(ctx)
}

// errOpenPanicked stands for the error of a start hook that panicked: the
// panic itself goes on to the Group, which reports it.
var errOpenPanicked = errors.New("lifecycle: start hook panicked")

// selfReady is implemented by the adapters that say themselves when they
// are ready, by calling reportReady with their Start's context, rather than
// through a Readier's channel (which would cost the Group a goroutine to
// watch it).
type selfReady interface{ selfReady() }

func (h *hooksComponent) selfReady()  {}
func (f *funcComponent) selfReady()   {}
func (w *workerComponent) selfReady() {}

// readyKey carries the function that tells the Group a component is ready.
type readyKey struct{}

// reportReady tells the Group that the component whose Start has ctx is
// ready. It does nothing for a context that does not come from a Group.
func reportReady(ctx context.Context) {
	if f, ok := ctx.Value(readyKey{}).(func()); ok {
		f()
	}
}
