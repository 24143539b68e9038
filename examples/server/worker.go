package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

// This file is a stand-in for the engine's planned lifecycle.Worker with a
// per-component stop budget (lifecycle.StopTimeout), which this branch's
// engine does not have yet. When the engine has them, the program adds the
// worker with
//
//	g.Add("worker", lifecycle.Worker(w.run), lifecycle.StopTimeout(o.workerStopTimeout))
//
// and this file goes.

// errStopBudget is the cause of the context a worker's fn sees when its stop
// budget has run out.
var errStopBudget = errors.New("worker: stop budget ran out")

// newWorker returns a Component that runs fn as a queue consumer, with the
// semantics of the planned lifecycle.Worker:
//
//   - Start calls fn with a context and a stopping channel, and returns what
//     fn returns (a cancellation of that context after Stop counts as nil).
//   - Stop closes stopping at once: fn must claim nothing new, but may
//     finish the item in hand, with its context still live. When fn has not
//     returned budget after Stop was called (or when Stop's context is done,
//     if that comes first), the context is cancelled with errStopBudget: fn
//     must then give the item in hand back and return. Stop returns when fn
//     has returned, or when Stop's context is done.
//
// The component is ready once fn has been called. After a Stop before Start,
// fn is never called.
func newWorker(budget time.Duration, fn func(ctx context.Context, stopping <-chan struct{}) error) lifecycle.Component {
	return &workerComponent{fn: fn, budget: budget,
		ready: make(chan struct{}), stopping: make(chan struct{}), done: make(chan struct{})}
}

type workerComponent struct {
	fn       func(ctx context.Context, stopping <-chan struct{}) error
	budget   time.Duration
	ready    chan struct{} // closed when fn is about to be called
	stopping chan struct{} // closed by Stop
	done     chan struct{} // closed when fn has returned

	mu      sync.Mutex
	cancel  context.CancelCauseFunc // set by Start
	stopped bool
}

func (w *workerComponent) Ready() <-chan struct{} { return w.ready }

func (w *workerComponent) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return nil
	}
	w.cancel = cancel
	w.mu.Unlock()
	defer close(w.done)
	close(w.ready)
	err := w.fn(ctx, w.stopping)
	if err != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.Cause(ctx))) {
		err = nil
	}
	return err
}

func (w *workerComponent) Stop(ctx context.Context) error {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return nil
	}
	w.stopped = true
	close(w.stopping)
	cancel := w.cancel
	w.mu.Unlock()
	if cancel == nil {
		return nil // never started: Start, if it comes, returns at once
	}
	budget := time.NewTimer(w.budget)
	defer budget.Stop()
	select {
	case <-w.done:
		return nil
	case <-budget.C:
	case <-ctx.Done():
	}
	cancel(errStopBudget)
	select {
	case <-w.done:
	case <-ctx.Done():
	}
	return nil
}
