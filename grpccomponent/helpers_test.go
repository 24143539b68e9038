package grpccomponent

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/graceful-go/graceful/lifecycle"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait is how long a test waits for something that should happen at once;
// it only bounds a test that fails, so it is generous.
const wait = 30 * time.Second

// The test service, registered by hand: a unary Echo and a bidirectional
// stream Chat, whose handlers each test sets.
const (
	echoMethod = "/test.Test/Echo"
	chatMethod = "/test.Test/Chat"
)

type testService struct {
	echo func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	chat func(stream grpc.ServerStream) error
}

var testDesc = grpc.ServiceDesc{
	ServiceName: "test.Test",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(*testService).echo(ctx, req.(*wrapperspb.StringValue))
			}
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: echoMethod}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Chat",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			return srv.(*testService).chat(stream)
		},
	}},
}

var chatDesc = grpc.StreamDesc{StreamName: "Chat", ServerStreams: true, ClientStreams: true}

// echo answers at once.
func echo(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String("echo: " + in.GetValue()), nil
}

// newServer returns a Server on a free loopback port with the test service.
func newServer(t *testing.T, svc *testService, opts ...Option) *Server {
	t.Helper()
	if svc.echo == nil {
		svc.echo = echo
	}
	if svc.chat == nil {
		svc.chat = func(grpc.ServerStream) error { return nil }
	}
	s := New("127.0.0.1:0", opts...)
	s.GRPC().RegisterService(&testDesc, svc)
	return s
}

// dial returns a client of addr, closed when the test ends.
func dial(t *testing.T, addr net.Addr) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func callEcho(ctx context.Context, cc *grpc.ClientConn, s string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := cc.Invoke(ctx, echoMethod, wrapperspb.String(s), out)
	return out.GetValue(), err
}

func checkHealth(ctx context.Context, cc *grpc.ClientConn, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	return resp.GetStatus(), err
}

// watchHealth watches the health of service and sends each status it
// receives on the returned channel, which is closed when the stream ends.
// The watch ends when the test does.
func watchHealth(t *testing.T, cc *grpc.ClientConn, service string) <-chan healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
	require.NoError(t, err)
	ch := make(chan healthpb.HealthCheckResponse_ServingStatus, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			ch <- resp.GetStatus()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ch
}

// nextStatus returns the next status a watch received; given want, the
// first status equal to it (or the last one before the watch ended).
func nextStatus(t *testing.T, ch <-chan healthpb.HealthCheckResponse_ServingStatus, want ...healthpb.HealthCheckResponse_ServingStatus) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case st, ok := <-ch:
			require.True(t, ok, "the health watch ended")
			if len(want) == 0 || st == want[0] {
				return st
			}
		case <-timeout:
			t.Fatal("no health status received")
			return 0
		}
	}
}

// readyGroup returns a Group of no component, started and ready, stopped at
// the end of the test: what WithHealth needs to report SERVING.
func readyGroup(t *testing.T) *lifecycle.Group {
	t.Helper()
	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithLogger(nil))
	done := make(chan error, 1)
	go func() { done <- g.Start(context.Background()) }()
	recv(t, g.Ready(), "the Group ready")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		assert.NoError(t, g.Stop(ctx))
		assert.NoError(t, recv(t, done, "the Group's Start to return"))
	})
	return g
}

// gatedComponent is a component that is ready when its gate opens.
type gatedComponent struct{ g *gate }

func (c gatedComponent) Ready() <-chan struct{} { return c.g.Ready() }
func (c gatedComponent) Start(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
func (c gatedComponent) Stop(context.Context) error { return nil }

// recv waits for ch to be closed or to deliver a value.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// groupRun is a lifecycle.Group being run by a test.
type groupRun struct {
	g      *lifecycle.Group
	cancel context.CancelFunc
	done   chan error
	events chan lifecycle.Event
	seen   []lifecycle.Event
}

// runGroup runs a Group of the components, named by pairs, with a shutdown
// budget, no drain delay (unless opts set one), no signals, and an observer
// that passes every event to hook (if not nil) and records it. The Group
// must be built by build, which receives it so that a component can use it
// (WithHealth).
func runGroup(t *testing.T, budget time.Duration, hook func(lifecycle.Event), build func(g *lifecycle.Group), opts ...lifecycle.Option) *groupRun {
	t.Helper()
	r := &groupRun{done: make(chan error, 1), events: make(chan lifecycle.Event, 1024)}
	opts = append([]lifecycle.Option{
		lifecycle.WithShutdownTimeout(budget),
		lifecycle.WithDrainDelay(0),
		lifecycle.WithSignals(),
		lifecycle.WithLogger(nil),
		lifecycle.WithObserver(func(ev lifecycle.Event) {
			if hook != nil {
				hook(ev)
			}
			r.events <- ev
		}),
	}, opts...)
	r.g = lifecycle.New(opts...)
	build(r.g)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(wait):
			t.Error("Run did not return")
		}
	})
	return r
}

// waitEvent returns the first event not yet seen of kind for component
// (empty for a Group event).
func (r *groupRun) waitEvent(t *testing.T, kind lifecycle.EventKind, component string) lifecycle.Event {
	t.Helper()
	for _, ev := range r.seen {
		if ev.Kind == kind && ev.Component == component {
			return ev
		}
	}
	timeout := time.After(wait)
	for {
		select {
		case ev := <-r.events:
			r.seen = append(r.seen, ev)
			if ev.Kind == kind && ev.Component == component {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %v event for %q", kind, component)
		}
	}
}

// result waits for Run to return and returns when it returned and its error.
func (r *groupRun) result(t *testing.T) (time.Time, error) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return time.Now(), err
	case <-time.After(wait):
		t.Fatal("Run did not return")
		return time.Time{}, nil
	}
}

// refused reports whether nothing listens on addr any more.
func refused(addr net.Addr) bool {
	c, err := net.DialTimeout("tcp", addr.String(), wait)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

// gate is a lifecycle.Readier the test opens.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate() *gate                   { return &gate{ch: make(chan struct{})} }
func (g *gate) Ready() <-chan struct{} { return g.ch }
func (g *gate) open()                  { g.once.Do(func() { close(g.ch) }) }
