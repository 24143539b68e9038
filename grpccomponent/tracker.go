package grpccomponent

import (
	"context"
	"slices"
	"sync"

	"google.golang.org/grpc"
)

// tracker knows the RPCs whose handlers are running, through the interceptors
// the Server installs, and can cancel their contexts: that is how a stream
// that waits on its context is ended when the shutdown budget runs out.
type tracker struct {
	mu    sync.Mutex
	calls map[*call]struct{}
	cause error // set once every RPC was cancelled: later ones start cancelled
}

type call struct {
	method string
	cancel context.CancelCauseFunc
}

// begin registers an RPC of method and returns its context, and a function to
// call when its handler has returned.
func (t *tracker) begin(ctx context.Context, method string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	c := &call{method: method, cancel: cancel}
	t.mu.Lock()
	if t.cause != nil {
		cancel(t.cause)
	}
	if t.calls == nil {
		t.calls = make(map[*call]struct{})
	}
	t.calls[c] = struct{}{}
	t.mu.Unlock()
	return ctx, func() {
		t.mu.Lock()
		delete(t.calls, c)
		t.mu.Unlock()
		cancel(nil)
	}
}

// cancel cancels, with cause, the contexts of the running RPCs of method, or
// of every RPC, those to come included, when method is empty.
func (t *tracker) cancel(method string, cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if method == "" && t.cause == nil {
		t.cause = cause
	}
	for c := range t.calls {
		if method == "" || c.method == method {
			c.cancel(cause)
		}
	}
}

// running returns the full method names of the RPCs whose handlers are
// running, sorted, with duplicates.
func (t *tracker) running() []string {
	t.mu.Lock()
	names := make([]string, 0, len(t.calls))
	for c := range t.calls {
		names = append(names, c.method)
	}
	t.mu.Unlock()
	slices.Sort(names)
	return names
}

func (t *tracker) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, end := t.begin(ctx, info.FullMethod)
	defer end()
	return handler(ctx, req)
}

func (t *tracker) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, end := t.begin(ss.Context(), info.FullMethod)
	defer end()
	return handler(srv, &trackedStream{ServerStream: ss, ctx: ctx})
}

// trackedStream is a server stream whose context the tracker can cancel.
type trackedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *trackedStream) Context() context.Context { return s.ctx }
