package grpccomponent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
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

// cutService is a test service whose RPCs run until the server cuts them.
// Each Chat stream reads one message that says how its handler ends once
// its context is cancelled; Echo returns ctx.Err().
func cutService(entered chan<- struct{}) *testService {
	return &testService{
		echo: func(ctx context.Context, _ *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			entered <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		},
		chat: func(ss grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			entered <- struct{}{}
			ctx := ss.Context()
			switch in.GetValue() {
			case "recv": // blocked on Recv: ends when the connection closes
				return ss.RecvMsg(in)
			case "status": // a CANCELLED status of its own
				<-ctx.Done()
				return status.FromContextError(ctx.Err()).Err()
			default: // the context's error
				<-ctx.Done()
				return ctx.Err()
			}
		},
	}
}

// cutVariants are the ways a Chat handler of cutService ends.
var cutVariants = []string{"recv", "status", "ctx"}

// openCutRPCs starts one Echo and one Chat of each variant on cc, waits until
// every handler runs, and returns a channel that receives the status code
// each client sees.
func openCutRPCs(t *testing.T, cc *grpc.ClientConn, entered <-chan struct{}) <-chan codes.Code {
	t.Helper()
	ctx := testContext(t)
	codesSeen := make(chan codes.Code, 1+len(cutVariants))
	go func() {
		_, err := callEcho(ctx, cc, "cut")
		codesSeen <- status.Code(err)
	}()
	for _, v := range cutVariants {
		cs, err := cc.NewStream(ctx, &chatDesc, chatMethod)
		require.NoError(t, err)
		require.NoError(t, cs.SendMsg(wrapperspb.String(v)))
		go func() {
			codesSeen <- status.Code(cs.RecvMsg(new(wrapperspb.StringValue)))
		}()
	}
	for range 1 + len(cutVariants) {
		recv(t, entered, "an RPC handler")
	}
	return codesSeen
}

// Item 4 of issue 10: when the stop deadline cuts RPCs, every client sees
// UNAVAILABLE (not CANCELLED), whatever the handler returns on its cancelled
// context and whether the transport is closed before or after the handler
// returns; and Stop reports how many RPCs it cut, as a timeout. Half the
// iterations stop with a context already done (the deadline passed before
// the server's turn), half cut a graceful stop under way.
func TestCutRPCsAreUnavailableAndReported(t *testing.T) {
	const iterations = 50
	rpcs := 1 + len(cutVariants)
	seen := map[codes.Code]int{}
	var took []time.Duration
	for i := range iterations {
		entered := make(chan struct{}, rpcs)
		s := newServer(t, cutService(entered))
		started := start(t, s)
		cc := dial(t, s.Addr())
		codesSeen := openCutRPCs(t, cc, entered)

		ctx, cancel := context.WithCancelCause(context.Background())
		stopped := make(chan error, 1)
		began := time.Now()
		if i%2 == 0 {
			cancel(lifecycle.ErrTimeout)
			go func() { stopped <- s.Stop(ctx) }()
		} else {
			go func() { stopped <- s.Stop(ctx) }()
			// The graceful stop is under way once the client has the GOAWAY.
			require.True(t, cc.WaitForStateChange(testContext(t), connectivity.Ready))
			cancel(lifecycle.ErrTimeout)
		}
		err := recv(t, stopped, "Stop")
		took = append(took, time.Since(began))
		require.ErrorIs(t, err, lifecycle.ErrTimeout, "iteration %d", i)
		require.ErrorContains(t, err, fmt.Sprintf("%d RPC(s) (%s ×%d, %s) cut: ",
			rpcs, chatMethod, len(cutVariants), echoMethod), "iteration %d", i)
		for range rpcs {
			code := recv(t, codesSeen, "a client's status")
			seen[code]++
			assert.Equal(t, codes.Unavailable, code, "iteration %d", i)
		}
		require.NoError(t, recv(t, started, "Start to return"))
		_ = cc.Close()
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("%d iterations, %d RPCs cut: statuses seen %v; Stop took median %v, max %v",
		iterations, iterations*rpcs, seen, took[len(took)/2], took[len(took)-1])
}

// A stop cut short by a repeated signal (the Group's stop context then has
// the cause ErrForced) is reported as forced, not as a timeout.
func TestCutByForceIsForced(t *testing.T) {
	entered := make(chan struct{}, 4)
	s := newServer(t, cutService(entered))
	started := start(t, s)
	codesSeen := openCutRPCs(t, dial(t, s.Addr()), entered)
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(lifecycle.ErrForced)
	err := s.Stop(ctx)
	require.ErrorIs(t, err, lifecycle.ErrForced)
	assert.NotErrorIs(t, err, lifecycle.ErrTimeout)
	assert.Equal(t, lifecycle.ExitForced, lifecycle.ExitCode(err))
	for range 4 {
		assert.Equal(t, codes.Unavailable, recv(t, codesSeen, "a client's status"))
	}
	require.NoError(t, recv(t, started, "Start to return"))
}

// Through a Group: the budget cuts a stream, Run returns ErrTimeout (exit
// code 3) naming the component and the RPC, and the client sees UNAVAILABLE.
func TestCutThroughTheGroup(t *testing.T) {
	const budget = 500 * time.Millisecond
	entered := make(chan struct{}, 4)
	var s *Server
	r := runGroup(t, budget, nil, func(g *lifecycle.Group) {
		s = newServer(t, cutService(entered))
		g.Add("grpc", s)
	})
	recv(t, r.g.Ready(), "the Group running")
	codesSeen := openCutRPCs(t, dial(t, s.Addr()), entered)
	r.cancel()
	_, err := r.result(t)
	require.ErrorIs(t, err, lifecycle.ErrTimeout)
	assert.Equal(t, lifecycle.ExitTimeout, lifecycle.ExitCode(err))
	var ce *lifecycle.ComponentError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "grpc", ce.Component)
	assert.ErrorContains(t, err, "4 RPC(s) (")
	for range 4 {
		assert.Equal(t, codes.Unavailable, recv(t, codesSeen, "a client's status"))
	}
}

// silentConn dials addr and returns a TCP connection that grpc has accepted
// and on which it waits for the HTTP/2 preface: the server has sent its
// SETTINGS. If preface is not empty, it is sent (part of a preface, say).
func silentConn(t *testing.T, addr net.Addr, preface string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Read(make([]byte, 1)) // the first byte of the server's SETTINGS
	require.NoError(t, err)
	if preface != "" {
		_, err = io.WriteString(c, preface)
		require.NoError(t, err)
	}
	return c
}

// closedByServer waits until the server has closed c, and reports whether it
// has (an error other than a timeout of the test).
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// Item 8 of issue 10: a TCP connection that never sends the HTTP/2 preface
// (a port scan, a client that hangs) does not hold the stop: grpc would wait
// for its handshake until grpc.ConnectionTimeout (120 s), past any budget.
// Stop ends it at once, returns well within the budget, and reports nothing
// lost; the real client beside it gets its GOAWAY.
func TestSilentConnectionsDoNotHoldTheStop(t *testing.T) {
	const budget = 2 * time.Second
	for _, preface := range []string{"", "PRI * HTTP/2.0\r\n"} {
		name := "nothing sent"
		if preface != "" {
			name = "half a preface sent"
		}
		t.Run(name, func(t *testing.T) {
			var s *Server
			r := runGroup(t, budget, nil, func(g *lifecycle.Group) {
				s = newServer(t, &testService{})
				g.Add("grpc", s)
			})
			recv(t, r.g.Ready(), "the Group running")
			cc := dial(t, s.Addr())
			_, err := callEcho(testContext(t), cc, "before")
			require.NoError(t, err)
			raw := silentConn(t, s.Addr(), preface)

			r.cancel()
			shutdown := r.waitEvent(t, lifecycle.EventShutdown, "").Time
			end, err := r.result(t)
			stopped := r.waitEvent(t, lifecycle.EventStopped, "grpc")
			t.Logf("with a silent connection open, Stop took %v, Run returned %v after the shutdown began",
				stopped.Duration, end.Sub(shutdown))
			require.NoError(t, err, "nothing in flight was lost")
			assert.Less(t, stopped.Duration, budget/2, "Stop waited for the silent connection")
			assert.True(t, closedByServer(t, raw), "the silent connection is closed")
			assert.NotEqual(t, connectivity.Ready, cc.GetState(), "the client was told to go away")
		})
	}
}

// A handshake that grpc begins after the stop began (the connection was
// accepted just before the listener closed) ends at once too.
func TestHandshakeAfterStopEnds(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := newHandshakes(lis)
	defer hs.Close()
	client, err := net.Dial("tcp", lis.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	hs.stop()
	c, err := hs.Accept()
	require.NoError(t, err)
	defer c.Close()
	// What grpc does: a deadline for the handshake, then a read.
	require.NoError(t, c.SetDeadline(time.Now().Add(wait)))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the handshake's read fails at once")
	// The handshake has ended: the deadline is the connection's again.
	require.NoError(t, c.SetDeadline(time.Time{}))
	require.NoError(t, c.SetDeadline(time.Now().Add(wait)))
	_, err = client.Write([]byte("x"))
	require.NoError(t, err)
	n, err := c.Read(make([]byte, 1))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

// The stop ends the health Watch streams (they would hold the graceful stop
// until the deadline) with UNAVAILABLE, and does not count them as cut.
func TestHealthWatchEndsUnavailable(t *testing.T) {
	ctx := testContext(t)
	s := newServer(t, &testService{}, WithHealth(readyGroup(t)))
	started := start(t, s)
	stream, err := healthpb.NewHealthClient(dial(t, s.Addr())).Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	for {
		resp, err := stream.Recv()
		require.NoError(t, err)
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
	}
	require.NoError(t, s.Stop(ctx), "a health watch is not counted as cut")
	for {
		if _, err = stream.Recv(); err != nil {
			break
		}
	}
	assert.Equal(t, codes.Unavailable, status.Code(err), "the watch ended with %v", err)
	require.NoError(t, recv(t, started, "Start to return"))
}
