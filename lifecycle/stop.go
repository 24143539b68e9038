package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// stopAll stops the started components in reverse order, bounded by ctx.
//
// A worker goroutine stops them one by one: Stop, then the wait for Start to
// return. While ctx is not done, stopAll just waits for the worker to finish.
// Once ctx is done, each step of the worker may take up to half of stopGrace,
// and all of them together stopGrace: a worker stuck longer is abandoned, the
// component it was stopping is named, and a new worker goes on with the next
// component, whose Stop is called with the expired ctx. Each worker is
// watched only once it has begun its first step, so no Stop goes uncalled.
func (g *Group) stopAll(ctx context.Context) {
	g.setPhase(PhaseStopping)
	var end time.Time // when the grace after ctx is done runs out
	for next := len(g.entries) - 1; next >= 0; {
		w := &stopWorker{progress: make(chan struct{}, 1), done: make(chan struct{})}
		go g.stopFrom(ctx, w, next)
		// Every component's Stop is called, however late: wait until the new
		// worker has begun its first step (no user code runs before it).
		select {
		case <-w.progress:
		case <-w.done:
			return
		}
		if end.IsZero() {
			select {
			case <-w.done:
				return
			case <-ctx.Done():
				end = time.Now().Add(stopGrace)
			}
		}
		if w.watch(end) {
			return
		}
		at, inStop := w.abandon()
		if at < 0 {
			return // it finished as it was abandoned
		}
		e := g.entries[at]
		if inStop {
			g.abandon(ctx, e, "Stop did not return")
			g.mu.Lock()
			cause := g.cause
			g.mu.Unlock()
			e.cancel(cause)
		} else {
			g.abandon(ctx, e, "Start did not return after Stop")
		}
		next = at - 1
	}
}

// stopWorker is the state of one worker goroutine of the stop phase.
type stopWorker struct {
	progress chan struct{} // a step ended (buffered: a send never blocks)
	done     chan struct{} // closed when every component has been stopped

	mu        sync.Mutex
	at        int  // the index of the component being stopped; -1 when finished
	inStop    bool // in its Stop (else waiting for its Start)
	abandoned bool
}

// step tells that the worker begins a step for component i; it returns false
// if the worker was abandoned and must end.
func (w *stopWorker) step(i int, inStop bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.abandoned {
		return false
	}
	w.at, w.inStop = i, inStop
	select {
	case w.progress <- struct{}{}:
	default:
	}
	return true
}

// alive reports whether the worker was not abandoned.
func (w *stopWorker) alive() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.abandoned
}

// finish tells that the worker has stopped every component.
func (w *stopWorker) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.abandoned {
		w.at = -1
		close(w.done)
	}
}

// watch waits, after the stop context is done, for the worker to finish,
// giving each step up to half of stopGrace and all of them until end. It
// reports whether the worker finished.
func (w *stopWorker) watch(end time.Time) bool {
	for {
		limit := min(time.Until(end), stopGrace/2)
		if limit <= 0 {
			select {
			case <-w.done:
				return true
			default:
				return false
			}
		}
		t := time.NewTimer(limit)
		select {
		case <-w.done:
			t.Stop()
			return true
		case <-w.progress:
			t.Stop()
		case <-t.C:
			return false
		}
	}
}

// abandon marks the worker abandoned and returns the component it was
// stopping, or -1 if it had finished.
func (w *stopWorker) abandon() (at int, inStop bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.abandoned = true
	return w.at, w.inStop
}

// stopFrom stops the components from index i down to 0.
func (g *Group) stopFrom(ctx context.Context, w *stopWorker, i int) {
	for ; i >= 0; i-- {
		e := g.entries[i]
		if !e.stop {
			continue
		}
		if !w.step(i, true) {
			return
		}
		g.mu.Lock()
		e.stopping = true
		cause := g.cause
		g.mu.Unlock()
		g.emit(Event{Kind: EventStopping, Component: e.name})
		began := g.clock()
		err := call(e.c, ctx, true)
		if !w.step(i, false) {
			return
		}
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, context.Cause(ctx)) {
				err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
			}
			g.record(&ComponentError{Component: e.name, Phase: PhaseStopping, Err: err})
		}
		e.cancel(cause)
		<-e.done
		if !w.alive() {
			return
		}
		g.mu.Lock()
		unreported := e.unreported
		g.mu.Unlock()
		if unreported && !benign(e.ctx, e.err) {
			// Start failed after the start had already failed for another reason.
			g.record(&ComponentError{Component: e.name, Phase: PhaseStarting, Err: e.err})
		}
		g.emit(Event{Kind: EventStopped, Component: e.name, Err: err, Duration: since(began)})
	}
	w.finish()
}

func (g *Group) abandon(ctx context.Context, e *entry, what string) {
	cerr := &ComponentError{Component: e.name, Phase: PhaseStopping, Err: abandonErr(ctx, what)}
	g.record(cerr)
	g.emit(Event{Kind: EventAbandoned, Component: e.name, Err: cerr})
}

// abandonErr says that what did not happen before ctx, the stop context, was
// done: forced (ErrForced) or timed out (ErrTimeout).
func abandonErr(ctx context.Context, what string) error {
	if errors.Is(context.Cause(ctx), ErrForced) {
		return fmt.Errorf("%s before the shutdown was forced: %w", what, ErrForced)
	}
	return fmt.Errorf("%s within the shutdown timeout: %w", what, ErrTimeout)
}
