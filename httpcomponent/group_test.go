package httpcomponent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quietGroup returns a Group that handles no signals and logs nothing.
func quietGroup(opts ...lifecycle.Option) *lifecycle.Group {
	return lifecycle.New(append([]lifecycle.Option{lifecycle.WithSignals(), lifecycle.WithLogger(nil)}, opts...)...)
}

func TestGroupPortInUseRollsBack(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	var mu sync.Mutex
	var stops []string
	stopper := func(name string) func(context.Context) error {
		return func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			stops = append(stops, name)
			return nil
		}
	}
	g := quietGroup()
	g.Add("a", lifecycle.Hooks(nil, stopper("a")))
	g.Add("b", lifecycle.Hooks(nil, stopper("b")))
	g.Add("http", New(busy.Addr().String(), nil))

	err = g.Run(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EADDRINUSE, "the bind error, not a cancellation")
	var cerr *lifecycle.ComponentError
	require.ErrorAs(t, err, &cerr)
	assert.Equal(t, "http", cerr.Component)
	assert.Equal(t, lifecycle.PhaseStarting, cerr.Phase)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"b", "a"}, stops, "the components started before are stopped in reverse order")
}

func TestGroupReadiness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String()
	c := client(t)

	type probe struct{ ready, live int }
	atDrain := make(chan probe, 1)
	g := quietGroup(
		lifecycle.WithDrainDelay(100*time.Millisecond),
		lifecycle.WithShutdownTimeout(wait),
		lifecycle.WithObserver(func(ev lifecycle.Event) {
			if ev.Kind == lifecycle.EventPhase && ev.Phase == lifecycle.PhaseDraining {
				// The first moment of the drain: the Group has just turned
				// not ready, and nothing else has happened yet.
				atDrain <- probe{ready: get(c, url+"/readyz").status, live: get(c, url+"/livez").status}
			}
		}),
	)
	g.Add("http", New("", http.NotFoundHandler(), WithListener(ln), WithHealth(g)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	recv(t, g.Ready(), "group ready")

	res := get(c, url+"/readyz")
	require.NoError(t, res.err)
	assert.Equal(t, http.StatusOK, res.status, "ready while running")
	assert.Equal(t, "ok\n", res.body)
	assert.Equal(t, http.StatusOK, get(c, url+"/livez").status, "live while running")
	assert.Equal(t, http.StatusNotFound, get(c, url+"/other").status, "other paths go to the handler")

	cancel()
	p := recv(t, atDrain, "drain")
	assert.Equal(t, http.StatusServiceUnavailable, p.ready, "not ready from the first moment of the drain")
	assert.Equal(t, http.StatusOK, p.live, "live while draining")
	assert.NoError(t, recv(t, done, "Run"))
}

// balancer is the view a load balancer with active health checks has of the
// instance under test: it routes new connections to it until its /readyz has
// failed fall times in a row (HAProxy's "fall 3"), then marks it down.
type balancer struct {
	up     atomic.Bool
	probes atomic.Int64
	downAt time.Time // written before up turns false
}

func (b *balancer) watch(c *http.Client, url string, stop <-chan struct{}) {
	const fall = 3
	failed := 0
	for i := 0; i < 100000 && failed < fall; i++ {
		select {
		case <-stop:
			return
		default:
		}
		b.probes.Add(1)
		if res := get(c, url+"/readyz"); res.err != nil || res.status != http.StatusOK {
			failed++
		} else {
			failed = 0
		}
	}
	b.downAt = time.Now()
	b.up.Store(false)
}

// loadClient is one keep-alive client of the load test, behind the balancer:
// it sends requests one after the other on its connection; when a response
// says Connection: close, its next request needs a new connection, which the
// balancer sends elsewhere once the instance is down. Every outcome is
// classified.
type loadClient struct {
	c      *http.Client
	ok     int      // 200 responses
	closes int      // of which said Connection: close
	lost   []string // requests that were sent and got no response
	unsent []string // requests that failed before they were sent, other than by a refusal
}

// send sends one GET and classifies it. It reports whether a response came
// and whether it said Connection: close; a refusal before anything was sent
// is reported as refused.
func (lc *loadClient) send(url string) (ok, closed, refused bool) {
	var wrote, lostAttempt bool
	trace := &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) {
			// A second connection for the same request: the transport
			// retries an attempt that was written and failed.
			lostAttempt = lostAttempt || wrote
		},
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote = true },
	}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
	resp, err := lc.c.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	switch {
	case lostAttempt:
		lc.lost = append(lc.lost, fmt.Sprintf("%s: an attempt was sent and retried (final error %v)", url, err))
	case err == nil && resp.StatusCode == http.StatusOK:
		lc.ok++
		if resp.Close {
			lc.closes++
		}
		return true, resp.Close, false
	case err == nil:
		lc.lost = append(lc.lost, fmt.Sprintf("%s: status %d", url, resp.StatusCode))
	case errors.Is(err, syscall.ECONNREFUSED) && !wrote:
		return false, false, true
	case !wrote:
		lc.unsent = append(lc.unsent, fmt.Sprintf("%s: %v", url, err))
	default:
		lc.lost = append(lc.lost, fmt.Sprintf("%s (written: %v): %v", url, wrote, err))
	}
	return false, false, false
}

// run sends up to limit requests, until the balancer keeps it away. It calls
// warm once, after its tenth response or when it ends.
func (lc *loadClient) run(url string, limit int, b *balancer, warm func()) {
	var once sync.Once
	defer once.Do(warm)
	needConn := true
	for i := 0; i < limit; i++ {
		if needConn && !b.up.Load() {
			return // the balancer routes this client elsewhere from now on
		}
		ok, closed, _ := lc.send(url)
		needConn = !ok || closed
		if lc.ok >= 10 {
			once.Do(warm)
		}
	}
}

func TestGroupShutdownUnderLoad(t *testing.T) {
	const (
		clients = 16
		slow    = 4     // clients that also have a request in flight when the stop begins
		limit   = 50000 // requests per client at most
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()

	stopping := make(chan struct{}) // closed when the Group begins to stop the server
	var stopAt time.Time            // written before stopping is closed
	var once sync.Once
	g := quietGroup(
		// Longer than the balancer needs to see the drain, even on a slow
		// machine: that is what a drain delay is for.
		lifecycle.WithDrainDelay(time.Second),
		lifecycle.WithShutdownTimeout(wait),
		lifecycle.WithObserver(func(ev lifecycle.Event) {
			if ev.Kind == lifecycle.EventStopping && ev.Component == "http" {
				once.Do(func() {
					stopAt = ev.Time
					close(stopping)
				})
			}
		}),
	)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	slowEntered := make(chan struct{}, slow)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		slowEntered <- struct{}{}
		<-stopping // in flight when the stop begins
		_, _ = io.WriteString(w, "slow")
	})
	g.Add("http", New("", mux, WithListener(ln), WithHealth(g)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	recv(t, g.Ready(), "group ready")

	var lb balancer
	lb.up.Store(true)
	lbDone := make(chan struct{})
	lbStop := make(chan struct{})
	go func() {
		defer close(lbDone)
		lb.watch(client(t), base, lbStop)
	}()
	defer func() { close(lbStop); <-lbDone }()

	var warmed, ended sync.WaitGroup
	warmed.Add(clients)
	lcs := make([]*loadClient, clients)
	slowResults := make(chan result, slow)
	for i := range lcs {
		lcs[i] = &loadClient{c: client(t)}
		ended.Add(1)
		go func() {
			defer ended.Done()
			lcs[i].run(base+"/", limit, &lb, warmed.Done)
		}()
	}
	for range slow {
		go func() { slowResults <- get(client(t), base+"/slow") }()
		recv(t, slowEntered, "slow request in flight")
	}
	warmed.Wait() // every client has had 10 responses on its keep-alive connection
	cancel()
	assert.NoError(t, recv(t, done, "Run"))
	allEnded := make(chan struct{})
	go func() { ended.Wait(); close(allEnded) }()
	recv(t, allEnded, "clients ended")

	for range slow {
		res := recv(t, slowResults, "slow request")
		require.NoError(t, res.err, "a request in flight when the stop began")
		assert.Equal(t, http.StatusOK, res.status)
		assert.Equal(t, "slow", res.body)
	}
	<-stopping
	require.False(t, lb.up.Load(), "the balancer never saw the drain")
	require.True(t, lb.downAt.Before(stopAt),
		"the balancer saw the drain only %v after the stop began: the machine is too slow for the drain delay", lb.downAt.Sub(stopAt))
	var total, closes int
	for i, lc := range lcs {
		assert.Empty(t, lc.lost, "client %d: requests sent and lost", i)
		assert.Empty(t, lc.unsent, "client %d: requests that failed before they were sent", i)
		assert.GreaterOrEqual(t, lc.ok, 10, "client %d", i)
		total += lc.ok
		closes += lc.closes
		// A client that ignores the balancer now is refused before it sends.
		_, _, refused := lc.send(base + "/")
		assert.True(t, refused, "client %d: a request after the stop is refused before it is sent", i)
		assert.Empty(t, lc.lost, "client %d: requests sent and lost", i)
	}
	t.Logf("%d clients: %d responses, %d with Connection: close during the drain; the balancer probed %d times and marked the instance down %v before the stop",
		clients, total, closes, lb.probes.Load(), stopAt.Sub(lb.downAt))
	assert.Positive(t, closes, "no response said Connection: close during the drain")
}

// TestGroupShutdownUnderHammer is the load test without a balancer: every
// client ignores readiness and keeps sending, opening a new connection after
// each Connection: close, until a connection is refused. Requests race the
// closing of the listener; none that was sent may be lost. It relies on
// listener.drain, which only Linux has.
func TestGroupShutdownUnderHammer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("closing a listener resets the connections in its accept queue; only the Linux listener drains them")
	}
	const (
		clients = 16
		limit   = 50000 // requests per client at most
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String() + "/"
	g := quietGroup(lifecycle.WithDrainDelay(300*time.Millisecond), lifecycle.WithShutdownTimeout(wait))
	g.Add("http", New("", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), WithListener(ln)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	recv(t, g.Ready(), "group ready")

	var warmed, ended sync.WaitGroup
	warmed.Add(clients)
	lcs := make([]*loadClient, clients)
	refused := make([]bool, clients)
	for i := range lcs {
		lcs[i] = &loadClient{c: client(t)}
		ended.Add(1)
		go func() {
			defer ended.Done()
			var once sync.Once
			defer once.Do(warmed.Done)
			for range limit {
				if _, _, refused[i] = lcs[i].send(url); refused[i] {
					return
				}
				if lcs[i].ok >= 10 {
					once.Do(warmed.Done)
				}
			}
		}()
	}
	warmed.Wait()
	cancel()
	assert.NoError(t, recv(t, done, "Run"))
	allEnded := make(chan struct{})
	go func() { ended.Wait(); close(allEnded) }()
	recv(t, allEnded, "clients ended")

	var total, closes int
	for i, lc := range lcs {
		assert.Empty(t, lc.lost, "client %d: requests sent and lost", i)
		if len(lc.unsent) > 0 {
			// A handshake that completed in the microseconds between drain's
			// last accept and its shutdown: reset, but nothing was sent.
			t.Logf("client %d: failed before sending: %v", i, lc.unsent)
		}
		assert.True(t, refused[i] || len(lc.unsent) > 0, "client %d ended without a refusal", i)
		total += lc.ok
		closes += lc.closes
	}
	t.Logf("%d clients: %d responses, %d with Connection: close", clients, total, closes)
	assert.Positive(t, closes)
}
