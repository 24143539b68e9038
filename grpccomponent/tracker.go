package grpccomponent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tracker knows the RPCs whose handlers are running, through the interceptors
// the Server installs, and can cancel their contexts: that is how a stream
// that waits on its context is ended when the shutdown budget runs out. It
// counts the RPCs it cut that way, so that Stop can report them.
type tracker struct {
	mu    sync.Mutex
	calls map[*call]struct{}
	cause error          // set once every RPC was cut: later ones start cut
	cut   map[string]int // the RPCs cut, by method
	ncut  int            // how many RPCs were cut
}

type call struct {
	method string
	cancel context.CancelCauseFunc
	// ended is set, under the tracker's lock, once the tracker has
	// cancelled the call's context: cut at the deadline, or a health Watch
	// ended by the stop.
	ended bool
}

// begin registers an RPC of method and returns its context, and a function to
// call with the handler's error when the handler has returned, which returns
// the error to send to the client.
func (t *tracker) begin(ctx context.Context, method string) (context.Context, func(error) error) {
	ctx, cancel := context.WithCancelCause(ctx)
	c := &call{method: method, cancel: cancel}
	t.mu.Lock()
	if t.cause != nil {
		t.cutLocked(c)
	}
	if t.calls == nil {
		t.calls = make(map[*call]struct{})
	}
	t.calls[c] = struct{}{}
	t.mu.Unlock()
	return ctx, func(err error) error {
		t.mu.Lock()
		delete(t.calls, c)
		ended := c.ended
		t.mu.Unlock()
		cancel(nil)
		if ended && err != nil && (errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled) {
			// The handler gave up because the server cancelled its
			// context. Its client must learn that the server went away
			// (UNAVAILABLE, which a client may retry elsewhere), not that the
			// call was cancelled, whether or not the connection is already
			// closed when grpc writes the status.
			return status.Error(codes.Unavailable, "grpccomponent: the server is stopping: "+err.Error())
		}
		return err
	}
}

// cutLocked cancels c's context with the tracker's cause and counts it as
// cut. t.mu must be held.
func (t *tracker) cutLocked(c *call) {
	if c.ended {
		return
	}
	c.ended = true
	c.cancel(t.cause)
	if t.cut == nil {
		t.cut = make(map[string]int)
	}
	t.cut[c.method]++
	t.ncut++
}

// end cancels, with cause, the contexts of the running RPCs of method, which
// are not counted as cut (the health Watch streams that a stop ends).
func (t *tracker) end(method string, cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.calls {
		if c.method == method && !c.ended {
			c.ended = true
			c.cancel(cause)
		}
	}
}

// cutAll cancels, with cause, the contexts of every running RPC and of those
// to come, and counts them as cut. Only the first cause is kept.
func (t *tracker) cutAll(cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cause == nil {
		t.cause = cause
	}
	for c := range t.calls {
		t.cutLocked(c)
	}
}

// cutReport describes the RPCs cut, as "3 RPC(s) (/a.B/C ×2, /a.B/D)", and
// returns the cause they were cut with; it returns "" if none was cut.
func (t *tracker) cutReport() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ncut == 0 {
		return "", nil
	}
	methods := make([]string, 0, len(t.cut))
	for m := range t.cut {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	const most = 10 // method names come from clients: keep the message short
	var b strings.Builder
	fmt.Fprintf(&b, "%d RPC(s) (", t.ncut)
	for i, m := range methods {
		if i == most {
			fmt.Fprintf(&b, ", and %d more method(s)", len(methods)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m)
		if n := t.cut[m]; n > 1 {
			fmt.Fprintf(&b, " ×%d", n)
		}
	}
	b.WriteString(")")
	return b.String(), t.cause
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

func (t *tracker) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	ctx, end := t.begin(ctx, info.FullMethod)
	defer func() { err = end(err) }() // deferred: a handler may panic
	return handler(ctx, req)
}

func (t *tracker) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	ctx, end := t.begin(ss.Context(), info.FullMethod)
	defer func() { err = end(err) }()
	return handler(srv, &trackedStream{ServerStream: ss, ctx: ctx})
}

// trackedStream is a server stream whose context the tracker can cancel.
type trackedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *trackedStream) Context() context.Context { return s.ctx }
