package grpccomponent

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/graceful-go/graceful/lifecycle"
)

// The adversarial suite: a Server in a Group, real grpc-go clients (and raw
// TCP ones) on loopback, one kind of client per case. For each: how many
// RPCs were lost, how long the stop took, and that no goroutine is left.

// adversary is one case of the suite: a Server run by a Group.
type adversary struct {
	t       *testing.T
	budget  time.Duration
	r       *groupRun
	s       *Server
	before  goleak.Option // the goroutines that ran before the case
	clients []*grpc.ClientConn
}

func newAdversary(t *testing.T, budget time.Duration, svc *testService) *adversary {
	t.Helper()
	a := &adversary{t: t, budget: budget, before: goleak.IgnoreCurrent()}
	a.r = runGroup(t, budget, nil, func(g *lifecycle.Group) {
		a.s = newServer(t, svc)
		g.Add("grpc", a.s)
	})
	recv(t, a.r.g.Ready(), "the Group running")
	return a
}

// client returns a new client connection, made READY by one Echo.
func (a *adversary) client() *grpc.ClientConn {
	a.t.Helper()
	cc := dial(a.t, a.s.Addr())
	_, err := callEcho(testContext(a.t), cc, "hello")
	require.NoError(a.t, err)
	a.clients = append(a.clients, cc)
	return cc
}

// beginStop begins the shutdown; the stop goes on in the Group.
func (a *adversary) beginStop() { a.r.cancel() }

// stopped waits for Run to return and returns how long after the shutdown
// began it did, and its error.
func (a *adversary) stopped() (time.Duration, error) {
	a.t.Helper()
	shutdown := a.r.waitEvent(a.t, lifecycle.EventShutdown, "").Time
	end, err := a.r.result(a.t)
	return end.Sub(shutdown), err
}

// noLeak closes the clients and checks that every goroutine the case
// started, the server's and the clients', has ended.
func (a *adversary) noLeak() {
	a.t.Helper()
	for _, cc := range a.clients {
		_ = cc.Close()
	}
	goleak.VerifyNone(a.t, a.before)
}

// report logs what the case measured.
func (a *adversary) report(lost, of int, took time.Duration, err error) {
	a.t.Helper()
	a.t.Logf("%s: %d of %d RPCs lost; Run returned %v after the shutdown began (budget %v); Run: %v",
		a.t.Name(), lost, of, took, a.budget, err)
}

// Many idle connections: every one is told to go away and the stop is quick.
func TestAdversarialIdleConnections(t *testing.T) {
	const n, budget = 200, 10 * time.Second
	a := newAdversary(t, budget, &testService{})
	for range n {
		a.client()
	}
	a.beginStop()
	took, err := a.stopped()
	a.report(0, 0, took, err)
	require.NoError(t, err)
	assert.Less(t, took, budget/2, "the idle connections held the stop")
	ctx := testContext(t)
	for _, cc := range a.clients {
		require.True(t, cc.WaitForStateChange(ctx, connectivity.Ready), "a client still READY")
	}
	_, err = callEcho(ctx, a.clients[0], "after")
	assert.Equal(t, codes.Unavailable, status.Code(err), "an RPC after the stop")
	a.noLeak()
}

// held is a service whose Echo handlers, for the value "hold", wait for
// release; each one entering is counted and signalled.
type held struct {
	entered chan struct{}
	release chan struct{}
	calls   atomic.Int32
}

func newHeld(n int) *held {
	return &held{entered: make(chan struct{}, n), release: make(chan struct{})}
}

func (h *held) service() *testService {
	return &testService{echo: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		if in.GetValue() == "hold" {
			h.calls.Add(1)
			h.entered <- struct{}{}
			<-h.release
		}
		return echo(ctx, in)
	}}
}

// hold starts n held Echo calls spread over ccs and waits until their
// handlers run; the channel receives each call's error.
func (h *held) hold(t *testing.T, ccs []*grpc.ClientConn, n int) <-chan error {
	t.Helper()
	ctx := testContext(t)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			got, err := callEcho(ctx, ccs[i%len(ccs)], "hold")
			if err == nil && got != "echo: hold" {
				err = fmt.Errorf("call %d answered %q", i, got)
			}
			errs <- err
		}()
	}
	for range n {
		recv(t, h.entered, "a held call's handler")
	}
	return errs
}

// lost counts the calls whose error is not nil.
func lost(t *testing.T, errs <-chan error, n int) int {
	t.Helper()
	k := 0
	for range n {
		if err := recv(t, errs, "a call to return"); err != nil {
			t.Logf("lost: %v", err)
			k++
		}
	}
	return k
}

// goneAway waits until every client has received the GOAWAY of the
// graceful stop.
func goneAway(t *testing.T, ccs []*grpc.ClientConn) {
	t.Helper()
	ctx := testContext(t)
	for _, cc := range ccs {
		require.True(t, cc.WaitForStateChange(ctx, connectivity.Ready), "a client still READY")
	}
}

// Unary calls in flight when the stop begins all complete, though the
// clients have been told to go away.
func TestAdversarialUnaryInFlight(t *testing.T) {
	const n, budget = 20, 10 * time.Second
	h := newHeld(n)
	a := newAdversary(t, budget, h.service())
	ccs := []*grpc.ClientConn{a.client(), a.client(), a.client(), a.client()}
	errs := h.hold(t, ccs, n)
	a.beginStop()
	goneAway(t, ccs)
	close(h.release)
	k := lost(t, errs, n)
	took, err := a.stopped()
	a.report(k, n, took, err)
	assert.Zero(t, k, "in-flight calls lost")
	require.NoError(t, err)
	assert.Less(t, took, budget/2)
	a.noLeak()
}

// New calls once the stop has begun get UNAVAILABLE, on the connections the
// clients had as on new ones, and none reaches a handler; the call in flight
// that holds the stop open completes.
func TestAdversarialNewCallsAfterDrain(t *testing.T) {
	const n, budget = 20, 10 * time.Second
	h := newHeld(1)
	a := newAdversary(t, budget, h.service())
	ccs := []*grpc.ClientConn{a.client(), a.client()}
	errs := h.hold(t, ccs[:1], 1)
	a.beginStop()
	goneAway(t, ccs)

	ctx := testContext(t)
	seen := map[codes.Code]int{}
	for i := range n {
		cc := ccs[i%len(ccs)]
		if i%2 == 1 {
			cc = dial(t, a.s.Addr()) // a new connection
		}
		_, err := callEcho(ctx, cc, "hold")
		seen[status.Code(err)]++
		if cc != ccs[i%len(ccs)] {
			_ = cc.Close()
		}
	}
	t.Logf("%d calls after the drain: statuses %v", n, seen)
	assert.Equal(t, map[codes.Code]int{codes.Unavailable: n}, seen)
	assert.Equal(t, int32(1), h.calls.Load(), "a call after the drain reached a handler")

	close(h.release)
	k := lost(t, errs, 1)
	took, err := a.stopped()
	a.report(k, 1, took, err)
	assert.Zero(t, k)
	require.NoError(t, err)
	a.noLeak()
}

// cutAtTheBudget checks a case whose n streams the budget cuts: Run returns
// ErrTimeout naming them, in time but not before the budget, and every
// client sees UNAVAILABLE.
func (a *adversary) cutAtTheBudget(codesSeen <-chan codes.Code, n int) {
	a.t.Helper()
	took, err := a.stopped()
	seen := map[codes.Code]int{}
	for range n {
		seen[recv(a.t, codesSeen, "a stream to end")]++
	}
	a.report(seen[codes.Unavailable], n, took, err)
	a.t.Logf("statuses seen: %v", seen)
	assert.Equal(a.t, map[codes.Code]int{codes.Unavailable: n}, seen)
	require.ErrorIs(a.t, err, lifecycle.ErrTimeout)
	assert.ErrorContains(a.t, err, fmt.Sprintf("%d RPC(s) (%s ×%d) cut", n, chatMethod, n), "the lost RPCs are reported")
	assert.GreaterOrEqual(a.t, took, a.budget-250*time.Millisecond, "cut before the budget")
	assert.LessOrEqual(a.t, took, a.budget+hardStopGrace+slack, "the stop overran the budget")
}

// Server streams still sending when the budget runs out are cut.
func TestAdversarialServerStreamsPastTheBudget(t *testing.T) {
	const n, budget = 10, time.Second
	entered := make(chan struct{}, n)
	svc := &testService{chat: func(ss grpc.ServerStream) error {
		entered <- struct{}{}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			if err := ss.SendMsg(wrapperspb.String(fmt.Sprint(i))); err != nil {
				return err
			}
			select {
			case <-ss.Context().Done():
				return ss.Context().Err()
			case <-tick.C:
			}
		}
	}}
	a := newAdversary(t, budget, svc)
	cc := a.client()
	ctx := testContext(t)
	codesSeen := make(chan codes.Code, n)
	for range n {
		cs, err := cc.NewStream(ctx, &chatDesc, chatMethod)
		require.NoError(t, err)
		go func() {
			for {
				if err := cs.RecvMsg(new(wrapperspb.StringValue)); err != nil {
					codesSeen <- status.Code(err)
					return
				}
			}
		}()
	}
	for range n {
		recv(t, entered, "a stream's handler")
	}
	a.beginStop()
	a.cutAtTheBudget(codesSeen, n)
	a.noLeak()
}

// Client streams whose clients stopped sending (without closing their side)
// keep their handlers waiting on Recv; the budget cuts them.
func TestAdversarialClientStreamsThatStopSending(t *testing.T) {
	const n, sent, budget = 10, 3, time.Second
	received := make(chan int, n)
	svc := &testService{chat: func(ss grpc.ServerStream) error {
		for i := 1; ; i++ {
			if err := ss.RecvMsg(new(wrapperspb.StringValue)); err != nil {
				return err
			}
			if i == sent {
				received <- i
			}
		}
	}}
	a := newAdversary(t, budget, svc)
	cc := a.client()
	ctx := testContext(t)
	codesSeen := make(chan codes.Code, n)
	for range n {
		cs, err := cc.NewStream(ctx, &chatDesc, chatMethod)
		require.NoError(t, err)
		for i := range sent {
			require.NoError(t, cs.SendMsg(wrapperspb.String(fmt.Sprint(i))))
		}
		go func() { codesSeen <- status.Code(cs.RecvMsg(new(wrapperspb.StringValue))) }()
	}
	for range n {
		recv(t, received, "a stream's messages")
	}
	a.beginStop()
	a.cutAtTheBudget(codesSeen, n)
	a.noLeak()
}

// A handler that ignores its context: Run still returns at the budget and
// names it, the client sees UNAVAILABLE, and once the handler returns
// nothing is left.
func TestAdversarialHandlerIgnoringItsContext(t *testing.T) {
	const budget = time.Second
	h := newHeld(1)
	a := newAdversary(t, budget, h.service())
	errs := h.hold(t, []*grpc.ClientConn{a.client()}, 1)
	a.beginStop()
	took, err := a.stopped()
	code := status.Code(recv(t, errs, "the call"))
	a.report(1, 1, took, err)
	assert.Equal(t, codes.Unavailable, code)
	require.ErrorIs(t, err, lifecycle.ErrTimeout)
	assert.ErrorContains(t, err, "1 RPC(s) ("+echoMethod+") cut; 1 RPC handler(s) still running")
	assert.ErrorContains(t, err, echoMethod)
	// The Group gives Stop and Start a grace of 200 ms past the budget.
	assert.LessOrEqual(t, took, budget+200*time.Millisecond+slack)
	close(h.release)
	a.noLeak()
}

// Half-open TCP connections (a port scan, clients that never send the
// HTTP/2 preface, or half of it) do not hold the stop, and the server
// closes them.
func TestAdversarialHalfOpenConnections(t *testing.T) {
	const n, budget = 50, 5 * time.Second
	a := newAdversary(t, budget, &testService{})
	cc := a.client()
	raws := make([]net.Conn, 0, n)
	for i := range n {
		preface := ""
		if i%5 == 0 {
			preface = "PRI * HTTP/2.0\r\n" // half the preface
		}
		raws = append(raws, silentConn(t, a.s.Addr(), preface))
	}
	a.beginStop()
	took, err := a.stopped()
	a.report(0, 0, took, err)
	require.NoError(t, err)
	assert.Less(t, took, budget/2, "the half-open connections held the stop")
	goneAway(t, []*grpc.ClientConn{cc})
	for _, c := range raws {
		assert.True(t, closedByServer(t, c), "a half-open connection left open")
	}
	a.noLeak()
}
