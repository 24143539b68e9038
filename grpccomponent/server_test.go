package grpccomponent

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/graceful-go/graceful/lifecycle"
)

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)

// slack is what a timing assertion allows for a slow, shared machine.
const slack = 500 * time.Millisecond

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// start runs s.Start in a goroutine, waits until s is ready, and returns a
// channel that receives what Start returned.
func start(t *testing.T, s *Server) <-chan error {
	t.Helper()
	started := make(chan error, 1)
	go func() { started <- s.Start(context.Background()) }()
	select {
	case <-s.Ready():
	case err := <-started:
		t.Fatalf("Start returned before ready: %v", err)
	case <-time.After(wait):
		t.Fatal("not ready")
	}
	return started
}

func TestStartServesAndStopEnds(t *testing.T) {
	ctx := testContext(t)
	s := newServer(t, &testService{})
	assert.Nil(t, s.Addr(), "Addr before Start")
	started := start(t, s)

	addr := s.Addr()
	require.NotNil(t, addr)
	assert.NotZero(t, addr.(*net.TCPAddr).Port, "the port of 127.0.0.1:0 once bound")
	cc := dial(t, addr)
	got, err := callEcho(ctx, cc, "hi")
	require.NoError(t, err)
	assert.Equal(t, "echo: hi", got)

	require.NoError(t, s.Stop(ctx))
	require.NoError(t, recv(t, started, "Start to return"))
	assert.True(t, refused(addr), "the listener is closed")
}

func TestWithListener(t *testing.T) {
	t.Run("serves on it", func(t *testing.T) {
		ctx := testContext(t)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		s := newServer(t, &testService{}, WithListener(lis))
		assert.Nil(t, s.Addr(), "Addr before Start")
		started := start(t, s)
		assert.Equal(t, lis.Addr(), s.Addr(), "Addr once ready")
		_, err = callEcho(ctx, dial(t, s.Addr()), "hi")
		require.NoError(t, err)
		require.NoError(t, s.Stop(ctx))
		require.NoError(t, recv(t, started, "Start to return"))
		assert.True(t, refused(lis.Addr()), "the listener is closed")
	})
	t.Run("closed by a Stop before Start", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		s := newServer(t, &testService{}, WithListener(lis))
		require.NoError(t, s.Stop(testContext(t)))
		assert.True(t, refused(lis.Addr()), "the listener is closed")
		require.NoError(t, s.Start(context.Background()))
	})
}

// Health is off by default, as in httpcomponent; with WithHealth it covers
// the overall status and every registered service, and only them.
func TestHealth(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		ctx := testContext(t)
		s := newServer(t, &testService{})
		started := start(t, s)
		_, err := checkHealth(ctx, dial(t, s.Addr()), "")
		assert.Equal(t, codes.Unimplemented, status.Code(err))
		require.NoError(t, s.Stop(ctx))
		require.NoError(t, recv(t, started, "Start to return"))
	})
	t.Run("every registered service", func(t *testing.T) {
		ctx := testContext(t)
		s := newServer(t, &testService{}, WithHealth(readyGroup(t)))
		started := start(t, s)
		cc := dial(t, s.Addr())
		for _, service := range []string{"", "test.Test"} {
			assert.Equal(t, serving, nextStatus(t, watchHealth(t, cc, service), serving), "health of %q", service)
		}
		_, err := checkHealth(ctx, cc, "no.Such")
		assert.Equal(t, codes.NotFound, status.Code(err), "health of an unknown service")
		require.NoError(t, s.Stop(ctx))
		require.NoError(t, recv(t, started, "Start to return"))
	})
	t.Run("WithHealth(nil) is an error of Start", func(t *testing.T) {
		s := newServer(t, &testService{}, WithHealth(nil))
		err := s.Start(context.Background())
		require.ErrorContains(t, err, "grpccomponent: WithHealth(nil)")
		require.NoError(t, s.Stop(testContext(t)))
	})
}

func TestPortInUse(t *testing.T) {
	occupied, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer occupied.Close()
	addr := occupied.Addr().String()

	t.Run("Start fails", func(t *testing.T) {
		s := New(addr)
		err := s.Start(context.Background())
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		select {
		case <-s.Ready():
			t.Error("ready after a failed Start")
		default:
		}
		assert.Nil(t, s.Addr())
		require.NoError(t, s.Stop(testContext(t)))
	})

	t.Run("the Group rolls back", func(t *testing.T) {
		var first *Server
		r := runGroup(t, 10*time.Second, nil, func(g *lifecycle.Group) {
			first = newServer(t, &testService{})
			g.Add("first", first)
			g.Add("second", New(addr))
		})
		_, err := r.result(t)
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		var ce *lifecycle.ComponentError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, "second", ce.Component)
		assert.Equal(t, lifecycle.PhaseStarting, ce.Phase)
		t.Logf("Run: %v", err)

		assert.NoError(t, r.waitEvent(t, lifecycle.EventStopped, "first").Err, "first stopped")
		for len(r.events) > 0 {
			r.seen = append(r.seen, <-r.events)
		}
		for _, ev := range r.seen {
			assert.False(t, ev.Component == "second" && ev.Kind == lifecycle.EventStopping, "second, which never started, was stopped")
		}
		assert.True(t, refused(first.Addr()), "first's listener is closed")
	})
}

// In-flight unary calls at shutdown complete; calls after the stop began get
// UNAVAILABLE.
func TestInFlightCallsFinishNewCallsUnavailable(t *testing.T) {
	const n = 3
	entered, release := make(chan struct{}, n), make(chan struct{})
	svc := &testService{echo: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		entered <- struct{}{}
		<-release
		return echo(ctx, in)
	}}
	var s *Server
	r := runGroup(t, 20*time.Second, nil, func(g *lifecycle.Group) {
		s = newServer(t, svc)
		g.Add("grpc", s)
	})
	recv(t, r.g.Ready(), "the Group running")
	ctx := testContext(t)
	cc := dial(t, s.Addr())

	type result struct {
		i   int
		got string
		err error
	}
	results := make(chan result, n)
	for i := range n {
		go func() {
			got, err := callEcho(ctx, cc, fmt.Sprint(i))
			results <- result{i, got, err}
		}()
	}
	for range n {
		recv(t, entered, "an in-flight call")
	}

	r.cancel()
	r.waitEvent(t, lifecycle.EventStopping, "grpc")
	// GracefulStop has closed the listener and sent GOAWAY: the client
	// leaves READY when it receives it.
	require.True(t, cc.WaitForStateChange(ctx, connectivity.Ready))
	_, err := callEcho(ctx, cc, "late")
	assert.Equal(t, codes.Unavailable, status.Code(err), "a new call on the old connection: %v", err)
	_, err = callEcho(ctx, dial(t, s.Addr()), "late")
	assert.Equal(t, codes.Unavailable, status.Code(err), "a new call on a new connection: %v", err)

	close(release)
	for range n {
		res := recv(t, results, "an in-flight call to return")
		if assert.NoError(t, res.err, "in-flight call %d", res.i) {
			assert.Equal(t, fmt.Sprintf("echo: %d", res.i), res.got)
		}
	}
	_, err = r.result(t)
	require.NoError(t, err)
}

// Health follows the Group: NOT_SERVING while it starts, SERVING while it
// runs, NOT_SERVING from the drain on, while the server still serves.
func TestHealthFollowsTheGroup(t *testing.T) {
	const budget = 20 * time.Second
	hold, proceed, stopping := make(chan struct{}), make(chan struct{}), make(chan struct{})
	hook := func(ev lifecycle.Event) {
		// Hold the Group between the drain and the Stop of the server.
		if ev.Kind == lifecycle.EventStopping && ev.Component == "grpc" {
			close(stopping)
			select {
			case <-proceed:
			case <-time.After(wait):
			}
		}
	}
	var s *Server
	r := runGroup(t, budget, hook, func(g *lifecycle.Group) {
		s = newServer(t, &testService{}, WithHealth(g))
		g.Add("grpc", s)
		g.Add("later", lifecycle.Hooks(func(ctx context.Context) error {
			select {
			case <-hold:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, nil))
	})
	recv(t, s.Ready(), "the server ready")
	ctx := testContext(t)
	cc := dial(t, s.Addr())
	overall, service := watchHealth(t, cc, ""), watchHealth(t, cc, "test.Test")

	// The server serves, but the Group is still starting.
	assert.Equal(t, notServing, nextStatus(t, overall), "overall, starting")
	assert.Equal(t, notServing, nextStatus(t, service), "service, starting")
	_, err := callEcho(ctx, cc, "early")
	require.NoError(t, err)

	close(hold)
	recv(t, r.g.Ready(), "the Group running")
	assert.Equal(t, serving, nextStatus(t, overall), "overall, running")
	assert.Equal(t, serving, nextStatus(t, service), "service, running")
	st, err := checkHealth(ctx, cc, "test.Test")
	require.NoError(t, err)
	assert.Equal(t, serving, st, "Check, running")

	r.cancel()
	recv(t, stopping, "the server's Stop")
	assert.Equal(t, notServing, nextStatus(t, overall), "overall, draining")
	assert.Equal(t, notServing, nextStatus(t, service), "service, draining")
	st, err = checkHealth(ctx, cc, "")
	require.NoError(t, err)
	assert.Equal(t, notServing, st, "Check, draining")
	_, err = callEcho(ctx, cc, "draining")
	require.NoError(t, err, "the server still serves after the drain hook")
	close(proceed)

	// Stop ends the health watches, so that they do not hold up the stop.
	_, open := recv2(t, overall)
	assert.False(t, open, "the watch ended")
	_, err = r.result(t)
	require.NoError(t, err)
	stopped := r.waitEvent(t, lifecycle.EventStopped, "grpc")
	assert.Less(t, stopped.Duration, budget/2, "Stop did not wait for the watches")
	t.Logf("Stop with two health watches open took %v", stopped.Duration)
}

func recv2[T any](t *testing.T, ch <-chan T) (T, bool) {
	t.Helper()
	select {
	case v, ok := <-ch:
		return v, ok
	case <-time.After(wait):
		t.Fatal("timed out")
		var zero T
		return zero, false
	}
}

// Long-lived streams are not cut when the shutdown begins; at the budget
// their contexts are cancelled and their connections closed, Stop returns in
// time and reports the stream it cut, and the client sees UNAVAILABLE.
func TestStreamsEndedAtTheBudget(t *testing.T) {
	const budget = time.Second
	tests := []struct {
		name   string
		handle func(grpc.ServerStream) error
		silent bool // a silent TCP connection is open too
	}{{
		name:   "blocked on Recv",
		handle: func(ss grpc.ServerStream) error { return ss.RecvMsg(new(wrapperspb.StringValue)) },
	}, {
		name: "waiting on its context",
		handle: func(ss grpc.ServerStream) error {
			<-ss.Context().Done()
			return ss.Context().Err()
		},
	}, {
		name: "waiting on its context, with a silent connection open",
		handle: func(ss grpc.ServerStream) error {
			<-ss.Context().Done()
			return ss.Context().Err()
		},
		silent: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entered, returned := make(chan struct{}), make(chan time.Time, 1)
			svc := &testService{chat: func(ss grpc.ServerStream) error {
				close(entered)
				err := tt.handle(ss)
				returned <- time.Now()
				return err
			}}
			var s *Server
			r := runGroup(t, budget, nil, func(g *lifecycle.Group) {
				s = newServer(t, svc)
				g.Add("grpc", s)
			})
			recv(t, r.g.Ready(), "the Group running")
			ctx := testContext(t)
			cs, err := dial(t, s.Addr()).NewStream(ctx, &chatDesc, chatMethod)
			require.NoError(t, err)
			recv(t, entered, "the stream handler")
			if tt.silent {
				// A connection that never sends the HTTP/2 preface: grpc
				// would wait for its handshake (up to 120 s by default).
				raw, err := net.Dial("tcp", s.Addr().String())
				require.NoError(t, err)
				// The server writes its settings once it has accepted the
				// connection, then waits for the preface.
				_, err = raw.Read(make([]byte, 1))
				require.NoError(t, err)
				defer func() {
					_ = raw.Close()
					// goleak (TestMain) waits for Start to return once grpc has
				}()
			}

			r.cancel()
			shutdown := r.waitEvent(t, lifecycle.EventShutdown, "").Time
			ended := recv(t, returned, "the handler to return")
			end, runErr := r.result(t)
			t.Logf("handler ended %v, Run returned %v after the shutdown began; Run: %v",
				ended.Sub(shutdown), end.Sub(shutdown), runErr)
			assert.GreaterOrEqual(t, ended.Sub(shutdown), budget-250*time.Millisecond, "the stream was cut before the budget")
			assert.LessOrEqual(t, end.Sub(shutdown), budget+hardStopGrace+slack, "Run returned late")
			err = cs.RecvMsg(new(wrapperspb.StringValue))
			assert.Equal(t, codes.Unavailable, status.Code(err), "the client sees: %v", err)
			require.ErrorIs(t, runErr, lifecycle.ErrTimeout, "the stream was cut")
			assert.Equal(t, lifecycle.ExitTimeout, lifecycle.ExitCode(runErr))
			assert.ErrorContains(t, runErr, "1 RPC(s) ("+chatMethod+") cut")
		})
	}
}

// A handler that ignores its context: Stop still returns at the deadline and
// names it, and Start returns once the handler has.
func TestHandlerIgnoringItsContext(t *testing.T) {
	const budget = time.Second
	for _, opts := range []struct {
		name string
		opts []Option
	}{
		{"default", nil},
		// grpc's own Stop then waits for the handler too.
		{"WaitForHandlers", []Option{WithServerOptions(grpc.WaitForHandlers(true))}},
	} {
		stuck := func(t *testing.T) (*testService, chan struct{}, chan struct{}) {
			entered, release := make(chan struct{}), make(chan struct{})
			return &testService{echo: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
				close(entered)
				<-release
				return echo(ctx, in)
			}}, entered, release
		}

		t.Run(opts.name+"/Stop", func(t *testing.T) {
			svc, entered, release := stuck(t)
			s := newServer(t, svc, opts.opts...)
			started := start(t, s)
			called := make(chan error, 1)
			go func() {
				_, err := callEcho(testContext(t), dial(t, s.Addr()), "stuck")
				called <- err
			}()
			recv(t, entered, "the handler")

			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			began := time.Now()
			err := s.Stop(ctx)
			took := time.Since(began)
			t.Logf("Stop took %v: %v", took, err)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorIs(t, err, lifecycle.ErrTimeout)
			assert.ErrorContains(t, err, echoMethod)
			assert.LessOrEqual(t, took, budget+hardStopGrace+slack)
			assert.Equal(t, codes.Unavailable, status.Code(recv(t, called, "the call")))

			select {
			case err := <-started:
				t.Fatalf("Start returned while a handler runs: %v", err)
			default:
			}
			close(release)
			require.NoError(t, recv(t, started, "Start to return"))
		})

		t.Run(opts.name+"/Group", func(t *testing.T) {
			svc, entered, release := stuck(t)
			var s *Server
			r := runGroup(t, budget, nil, func(g *lifecycle.Group) {
				s = newServer(t, svc, opts.opts...)
				g.Add("grpc", s)
			})
			recv(t, r.g.Ready(), "the Group running")
			called := make(chan error, 1)
			go func() {
				_, err := callEcho(testContext(t), dial(t, s.Addr()), "stuck")
				called <- err
			}()
			recv(t, entered, "the handler")

			r.cancel()
			shutdown := r.waitEvent(t, lifecycle.EventShutdown, "").Time
			end, err := r.result(t)
			t.Logf("Run returned %v after the shutdown began: %v", end.Sub(shutdown), err)
			assert.LessOrEqual(t, end.Sub(shutdown), budget+200*time.Millisecond+slack)
			require.ErrorIs(t, err, lifecycle.ErrTimeout)
			var ce *lifecycle.ComponentError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "grpc", ce.Component)
			assert.ErrorContains(t, err, echoMethod)
			assert.Equal(t, codes.Unavailable, status.Code(recv(t, called, "the call")))

			close(release)
		})
	}
}

func TestSafeInAnyOrder(t *testing.T) {
	t.Run("Stop before Start", func(t *testing.T) {
		s := newServer(t, &testService{})
		require.NoError(t, s.Stop(testContext(t)))
		require.NoError(t, s.Start(context.Background()))
		select {
		case <-s.Ready():
			t.Error("ready after Stop")
		default:
		}
	})

	t.Run("Stop twice", func(t *testing.T) {
		s := newServer(t, &testService{})
		started := start(t, s)
		require.NoError(t, s.Stop(testContext(t)))
		require.NoError(t, s.Stop(testContext(t)))
		require.NoError(t, recv(t, started, "Start to return"))
	})

	t.Run("Stop during Start", func(t *testing.T) {
		for range 20 {
			s := newServer(t, &testService{})
			started, stopped := make(chan error, 1), make(chan error, 1)
			go func() { started <- s.Start(context.Background()) }()
			go func() { stopped <- s.Stop(context.Background()) }()
			require.NoError(t, recv(t, stopped, "Stop to return"))
			require.NoError(t, recv(t, started, "Start to return"))
			if addr := s.Addr(); addr != nil {
				assert.True(t, refused(addr), "the listener is closed")
			}
		}
	})

	t.Run("Start twice", func(t *testing.T) {
		s := newServer(t, &testService{})
		started := start(t, s)
		assert.Error(t, s.Start(context.Background()))
		require.NoError(t, s.Stop(testContext(t)))
		require.NoError(t, recv(t, started, "Start to return"))
	})

	t.Run("Start's context cancelled", func(t *testing.T) {
		s := newServer(t, &testService{})
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan error, 1)
		go func() { started <- s.Start(ctx) }()
		recv(t, s.Ready(), "ready")
		cancel()
		require.NoError(t, recv(t, started, "Start to return"))
		assert.True(t, refused(s.Addr()), "the listener is closed")
		require.NoError(t, s.Stop(testContext(t)))
	})

	t.Run("a second Stop with a done context forces the first", func(t *testing.T) {
		entered, cause := make(chan struct{}), make(chan error, 1)
		s := newServer(t, &testService{chat: func(ss grpc.ServerStream) error {
			close(entered)
			<-ss.Context().Done()
			cause <- context.Cause(ss.Context())
			return ss.Context().Err()
		}})
		started := start(t, s)
		_, err := dial(t, s.Addr()).NewStream(testContext(t), &chatDesc, chatMethod)
		require.NoError(t, err)
		recv(t, entered, "the stream handler")

		first := make(chan error, 1)
		go func() { first <- s.Stop(context.Background()) }()
		done, cancel := context.WithCancelCause(context.Background())
		errForce := fmt.Errorf("forced by the test")
		cancel(errForce)
		err = s.Stop(done)
		require.ErrorIs(t, err, errForce, "the second Stop cut the stream")
		require.ErrorIs(t, err, lifecycle.ErrTimeout, "a stop cut short is a timeout")
		require.ErrorIs(t, recv(t, cause, "the handler's context cancelled"), errForce)
		err = recv(t, first, "the first Stop")
		require.ErrorIs(t, err, errForce, "the first Stop reports the stream cut")
		assert.ErrorContains(t, err, "1 RPC(s) ("+chatMethod+") cut")
		require.NoError(t, recv(t, started, "Start to return"))
	})
}

// With WithHealth(g), health is NOT_SERVING until g is ready, SERVING
// then, and NOT_SERVING for good from g's drain, while the server serves.
func TestHealthDrivenByTheGroup(t *testing.T) {
	ctx := testContext(t)
	gate := newGate()
	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithLogger(nil))
	s := newServer(t, &testService{}, WithHealth(g))
	g.Add("grpc", s)
	g.Add("gate", gatedComponent{gate})
	started := make(chan error, 1)
	go func() { started <- g.Start(context.Background()) }()
	recv(t, s.Ready(), "the server ready")
	cc := dial(t, s.Addr())
	watch := watchHealth(t, cc, "test.Test")
	assert.Equal(t, notServing, nextStatus(t, watch), "the Group is starting")
	gate.open()
	assert.Equal(t, serving, nextStatus(t, watch), "the Group is ready")
	g.Drain() // as a parent Group does
	assert.Equal(t, notServing, nextStatus(t, watch), "the Group drains")
	_, err := callEcho(ctx, cc, "draining")
	require.NoError(t, err)
	require.NoError(t, g.Stop(ctx))
	require.NoError(t, recv(t, started, "Start to return"))
}
