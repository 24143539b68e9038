package lifecycle

import (
	"context"
	"errors"
	"sync"
)

// Component is a long-running part of a service: a server, a worker, a pool.
//
// Start runs the component for its whole life. It blocks until the component
// has ended and returns nil when it ended because Stop was called (or because
// ctx was cancelled). A Start that returns while the Group is still running is
// a failure: the Group shuts down and reports the component, with
// [ErrExited] when Start returned nil.
//
// Stop asks the component to end and blocks until it has, or until ctx is done.
// When ctx is done (the shutdown budget ran out, or a repeated signal forced the
// shutdown), Stop should close what is left hard and return at once. The Group
// calls Stop exactly once for every component that started, even when ctx is
// already done, and never for a component whose Start failed before it was
// ready.
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
// The Group starts the next component only after Ready's channel is closed.
// A component that does not implement Readier is ready once its Start is
// running: the goroutine that calls it has begun. Nothing orders what that
// Start does against the next component's Start, or against its own Drain and
// Stop, which must be safe even before Start has run a line (those of Func and
// Hooks are). A component whose order matters implements Readier.
//
// A Ready that returns a nil channel means the component is ready at once.
//
// Ready may be called before Start, and must return the same channel every
// time. The channel is closed once, when the component is ready; a Start that
// fails before it is ready returns its error instead.
type Readier interface {
	Ready() <-chan struct{}
}

// Drainer is implemented by a component that wants to know when the Group
// begins to drain: readiness has just turned not-ready, and the component is
// still serving for the drain delay. An HTTP server can answer with
// "Connection: close" from then on; a gRPC server can report NOT_SERVING.
//
// Drain is called at most once, before Stop, and must not block.
type Drainer interface {
	Drain()
}

// Func returns a Component that runs fn as a background worker.
//
// Start calls fn with a context that is cancelled when Stop is called, and
// returns what fn returns; nil, context.Canceled or the context's cause after
// the cancellation count as a clean stop. Stop cancels that context, waits
// until fn has returned or ctx is done, and returns nil: a fn that does not
// return when its context is done is reported by the Group, which waits for
// Start, as abandoned.
//
// The component is a [Readier]: it is ready once fn has been called, so in a
// Group the next component starts only when fn is running. After a Stop
// before Start, fn is never called.
func Func(fn func(ctx context.Context) error) Component {
	return &funcComponent{fn: fn, ready: make(chan struct{}), done: make(chan struct{})}
}

type funcComponent struct {
	fn    func(ctx context.Context) error
	ready chan struct{} // closed when fn is about to be called
	done  chan struct{} // closed when Start has returned

	mu      sync.Mutex
	cancel  context.CancelCauseFunc // set by Start
	stopped bool                    // Stop was called
}

// errStopped is the cause of the context a Func's fn sees when Stop is called.
var errStopped = errors.New("lifecycle: component stopped")

func (f *funcComponent) Start(ctx context.Context) error {
	defer close(f.done)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return nil
	}
	f.cancel = cancel
	f.mu.Unlock()
	close(f.ready)
	err := f.fn(ctx)
	if err != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.Cause(ctx))) {
		err = nil
	}
	return err
}

func (f *funcComponent) Ready() <-chan struct{} { return f.ready }

func (f *funcComponent) Stop(ctx context.Context) error {
	f.mu.Lock()
	f.stopped = true
	cancel := f.cancel
	f.mu.Unlock()
	if cancel == nil {
		return nil // never started: Start, if it comes, returns at once
	}
	cancel(errStopped)
	select {
	case <-f.done:
	case <-ctx.Done():
	}
	return nil
}

// Hooks returns a Component for a resource that is opened and closed rather
// than run, such as a connection pool or a client.
//
// Start calls start (when it is not nil) and returns its error if it fails.
// Otherwise the component is ready (it implements [Readier]) and Start blocks
// until Stop is called or ctx is done. Stop calls stop (when it is not nil) with
// its ctx and returns its error. A Stop that comes while start is still running
// cancels start's context and waits for it to return (or for its own ctx); stop
// is called only if start succeeded. After a Stop before Start, neither start
// nor stop is ever called.
func Hooks(start, stop func(ctx context.Context) error) Component {
	return &hooksComponent{start: start, stop: stop, ready: make(chan struct{}),
		quit: make(chan struct{}), opened: make(chan struct{})}
}

type hooksComponent struct {
	start, stop func(ctx context.Context) error
	ready       chan struct{} // closed when start has returned nil
	quit        chan struct{} // closed by Stop
	opened      chan struct{} // closed when start has returned; openErr is its error
	openErr     error

	mu          sync.Mutex
	entered     bool // Start was called before Stop
	stopped     bool
	cancelStart context.CancelFunc
}

func (h *hooksComponent) Ready() <-chan struct{} { return h.ready }

func (h *hooksComponent) Start(ctx context.Context) error {
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return nil
	}
	h.entered = true
	ctx, cancel := context.WithCancel(ctx)
	h.cancelStart = cancel
	h.mu.Unlock()
	if h.start != nil {
		h.openErr = h.start(ctx)
	}
	close(h.opened)
	if h.openErr != nil {
		cancel()
		return h.openErr
	}
	close(h.ready)
	select {
	case <-h.quit:
	case <-ctx.Done():
	}
	return nil
}

func (h *hooksComponent) Stop(ctx context.Context) error {
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return nil
	}
	h.stopped = true
	close(h.quit)
	entered, cancel := h.entered, h.cancelStart
	h.mu.Unlock()
	if !entered {
		return nil
	}
	defer cancel()
	select {
	case <-h.opened:
	default:
		cancel() // start is still running: tell it
		select {
		case <-h.opened:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	if h.openErr != nil || h.stop == nil {
		return nil
	}
	return h.stop(ctx)
}
