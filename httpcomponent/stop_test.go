package httpcomponent

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests of this file pin down what a stop does to clients that are in
// the middle of something: a request half sent, a TLS or HTTP/2 connection,
// a connection queued behind a wrapped listener, a keep-alive client about
// to reuse its connection.

// okHandler answers "ok".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

// shutdownSeen returns a channel closed when srv's Shutdown begins.
func shutdownSeen(srv *http.Server) <-chan struct{} {
	ch := make(chan struct{})
	srv.RegisterOnShutdown(func() { close(ch) })
	return ch
}

// within waits for ch, or for at most d. It is no synchronisation: a test
// uses it to leave an old bug the time to show, where the behaviour under
// test does not depend on it.
func within(ch <-chan struct{}, d time.Duration) {
	select {
	case <-ch:
	case <-time.After(d):
	}
}

// TestRequestArrivingAcrossStop: a request whose first bytes have arrived
// when the stop begins, and whose last bytes arrive after, is served: on a
// new connection, and as the second request of a keep-alive connection.
func TestRequestArrivingAcrossStop(t *testing.T) {
	for _, keepAlive := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep-alive=%v", keepAlive), func(t *testing.T) {
			accepted := make(chan struct{}, 1)
			s := New("127.0.0.1:0", okHandler, WithConnState(func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					accepted <- struct{}{}
				}
			}))
			shut := shutdownSeen(s.HTTP())
			listenerClosed := make(chan struct{})
			s.testListenerClosed = func() { close(listenerClosed) }
			r := start(t, s)

			conn, err := net.Dial("tcp", r.addr)
			require.NoError(t, err)
			defer conn.Close()
			recv(t, accepted, "connection accepted")
			br := bufio.NewReader(conn)
			if keepAlive {
				resp := rawRequest(t, conn, br, "/")
				require.Equal(t, http.StatusOK, resp.StatusCode)
			}
			_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
			require.NoError(t, err)

			stopped := stopAsync(s, wait, nil)
			recv(t, listenerClosed, "listener closed")
			// Before the fix, Shutdown began at once (or after the grace of
			// a new connection) and dropped the request.
			within(shut, grace+300*time.Millisecond)
			_, err = io.WriteString(conn, "b\r\n\r\n")
			require.NoError(t, err)

			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err, "the request begun before the stop is answered")
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, "ok", string(body))
			assert.True(t, resp.Close, "the answer says Connection: close")
			assert.NoError(t, recv(t, stopped, "Stop"))
			assert.NoError(t, r.startErr(t))
		})
	}
}

// tlsConfig returns a server configuration with cert that offers HTTP/2 and
// HTTP/1.1, as a TLS listener given to the server must.
func tlsConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
}

// TestTLSListener: a TLS listener given with WithListener keeps HTTP/2
// (ALPN) and Request.TLS, and a stop is still graceful on it.
func TestTLSListener(t *testing.T) {
	cert, pool := testCert(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	slow := newBlocking(1)
	mux := http.NewServeMux()
	mux.Handle("/slow", slow)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proto=%d tls=%v", r.ProtoMajor, r.TLS != nil)
	})
	s := New("", mux, WithListener(tls.NewListener(inner, tlsConfig(cert))))
	r := start(t, s)
	base := "https://" + r.addr

	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(h2.CloseIdleConnections)
	h1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	t.Cleanup(h1.CloseIdleConnections)

	res := get(&http.Client{Transport: h2, Timeout: wait}, base+"/")
	require.NoError(t, res.err, "HTTP/2 over the TLS listener")
	assert.Equal(t, "proto=2 tls=true", res.body)
	res = get(&http.Client{Transport: h1, Timeout: wait}, base+"/")
	require.NoError(t, res.err, "HTTP/1.1 over the TLS listener")
	assert.Equal(t, "proto=1 tls=true", res.body)

	inflight := goGet(&http.Client{Transport: h2, Timeout: wait}, base+"/slow")
	recv(t, slow.entered, "stream entered")
	stopped := stopAsync(s, wait, nil)
	close(slow.release)
	res = recv(t, inflight, "stream in flight")
	require.NoError(t, res.err)
	assert.Equal(t, "done", res.body)
	assert.NoError(t, recv(t, stopped, "Stop"))
	assert.NoError(t, r.startErr(t))
}

// limitListener is a listener that wraps another, as
// golang.org/x/net/netutil.LimitListener does: at most n connections at a
// time, and Accept waits for a slot. With unwrap, it says what it wraps.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

// unwrapping is a limitListener that has an Unwrap method.
type unwrapping struct{ *limitListener }

func (u unwrapping) Unwrap() net.Listener { return u.Listener }

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// hammerRounds is how many stops the hammers below observe: a few by
// default, more when HTTPCOMPONENT_HAMMER_ROUNDS says so (to measure).
func hammerRounds(t *testing.T, def int) int {
	if v := os.Getenv("HTTPCOMPONENT_HAMMER_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "HTTPCOMPONENT_HAMMER_ROUNDS")
		return n
	}
	return def
}

// hammerTally is what clients saw across the rounds of a hammer.
type hammerTally struct {
	ok, lost, unsent int
	examples         []string
}

// hammer runs clients against url, each sending requests one after the
// other until one is refused (at most limit each), calls stop at a random
// instant once every client has had ten responses, and tallies the outcomes.
func hammer(t *testing.T, url string, clients int, newClient func() *http.Client, stop func()) hammerTally {
	t.Helper()
	const limit = 20000
	var warmed, ended sync.WaitGroup
	warmed.Add(clients)
	lcs := make([]*loadClient, clients)
	for i := range lcs {
		lcs[i] = &loadClient{c: newClient()}
		ended.Add(1)
		go func() {
			defer ended.Done()
			var once sync.Once
			defer once.Do(warmed.Done)
			for range limit {
				if _, _, refused := lcs[i].send(url); refused {
					return
				}
				if lcs[i].ok >= 10 {
					once.Do(warmed.Done)
				}
			}
		}()
	}
	warmed.Wait()
	<-time.After(time.Duration(rand.Int64N(int64(30 * time.Millisecond)))) // the random instant
	stop()
	allEnded := make(chan struct{})
	go func() { ended.Wait(); close(allEnded) }()
	recv(t, allEnded, "clients ended")
	var tally hammerTally
	for _, lc := range lcs {
		tally.ok += lc.ok
		tally.lost += len(lc.lost)
		tally.unsent += len(lc.unsent)
		tally.examples = append(tally.examples, lc.lost...)
		lc.c.CloseIdleConnections()
	}
	return tally
}

// TestQueueDrainThroughWrappedListener: behind a wrapper of the socket the
// Server binds (WithListenerWrapper) that says so (Unwrap), the connections
// queued when the stop begins are still served, and the socket is shut down
// in the same step, in a hammer of new connections (one per request). (A
// listener given with WithListener is never shut down: see the table's
// WithListener row.)
func TestQueueDrainThroughWrappedListener(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("closing a listener resets the connections in its accept queue; only the Linux listener drains them")
	}
	rounds := hammerRounds(t, 3)
	var total hammerTally
	for range rounds {
		s := New("127.0.0.1:0", okHandler, WithListenerWrapper(func(ln net.Listener) net.Listener {
			return unwrapping{newLimitListener(ln, 64)}
		}))
		r := start(t, s)
		tally := hammer(t, r.url+"/", 16, func() *http.Client {
			return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: wait}
		}, func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			assert.NoError(t, s.Stop(ctx))
		})
		require.NoError(t, r.startErr(t))
		total.ok += tally.ok
		total.lost += tally.lost
		total.unsent += tally.unsent
		total.examples = append(total.examples, tally.examples...)
	}
	t.Logf("%d stops through a wrapped listener: %d answered, %d lost, %d failed before sending", rounds, total.ok, total.lost, total.unsent)
	// Only a handshake completed in the microseconds between the check of
	// the queue and the shutdown of the socket can be reset.
	assert.LessOrEqual(t, total.lost, rounds/3, "requests sent and lost: %v", total.examples)
}

// TestKeepAliveHammerAtStop: keep-alive clients hammering at the instant of a
// stop without a drain lose (next to) nothing: a connection that has just
// finished a response answers its next request with Connection: close rather
// than being closed under it. A bare http.Server is measured beside it.
func TestKeepAliveHammerAtStop(t *testing.T) {
	rounds := hammerRounds(t, 3)
	newClient := func() *http.Client { return &http.Client{Transport: &http.Transport{}, Timeout: wait} }
	var component, bare hammerTally
	for range rounds {
		s := newServer(okHandler)
		r := start(t, s)
		tally := hammer(t, r.url+"/", 16, newClient, func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			assert.NoError(t, s.Stop(ctx))
		})
		require.NoError(t, r.startErr(t))
		component.ok += tally.ok
		component.lost += tally.lost
		component.examples = append(component.examples, tally.examples...)

		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := &http.Server{Handler: okHandler}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		tally = hammer(t, "http://"+ln.Addr().String()+"/", 16, newClient, func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			assert.NoError(t, srv.Shutdown(ctx))
		})
		assert.ErrorIs(t, recv(t, served, "Serve"), http.ErrServerClosed)
		bare.ok += tally.ok
		bare.lost += tally.lost
	}
	t.Logf("%d stops at drain 0: component %d answered, %d lost; bare http.Server %d answered, %d lost",
		rounds, component.ok, component.lost, bare.ok, bare.lost)
	assert.LessOrEqual(t, component.lost, (component.ok+component.lost)/10000, "requests sent and lost: %v", component.examples)
}

// h2Client returns a transport that speaks HTTP/2 to the server under test:
// over TLS with ALPN, or unencrypted with prior knowledge.
func h2Client(pool *x509.CertPool, tlsOn bool) *http.Transport {
	if tlsOn {
		return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	}
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return tr
}

// h2Server returns a Server for h, speaking HTTP/2 over TLS (WithTLS) or
// unencrypted.
func h2Server(cert tls.Certificate, tlsOn bool, h http.Handler, opts ...Option) *Server {
	if tlsOn {
		return New("127.0.0.1:0", h, append(opts, WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))...)
	}
	s := New("127.0.0.1:0", h, opts...)
	s.HTTP().Protocols = new(http.Protocols)
	s.HTTP().Protocols.SetHTTP1(true)
	s.HTTP().Protocols.SetUnencryptedHTTP2(true)
	return s
}

// TestHTTP2IdleConnectionStopsFast: an idle HTTP/2 connection does not hold
// a stop for net/http's one-second GOAWAY timer, whether the stop comes alone
// or after a drain during which the connection carried a request.
func TestHTTP2IdleConnectionStopsFast(t *testing.T) {
	const slowest = 700 * time.Millisecond // net/http's timer alone is one second
	cert, pool := testCert(t)
	for _, tlsOn := range []bool{false, true} {
		scheme := "http"
		if tlsOn {
			scheme = "https"
		}
		t.Run(scheme+"/alone", func(t *testing.T) {
			s := h2Server(cert, tlsOn, okHandler)
			r := start(t, s)
			tr := h2Client(pool, tlsOn)
			t.Cleanup(tr.CloseIdleConnections)
			res := get(&http.Client{Transport: tr, Timeout: wait}, scheme+"://"+r.addr+"/")
			require.NoError(t, res.err)
			require.Equal(t, 2, res.proto)

			began := time.Now()
			assert.NoError(t, recv(t, stopAsync(s, wait, nil), "Stop"))
			took := time.Since(began)
			t.Logf("Stop with one idle HTTP/2 connection took %v", took)
			assert.Less(t, took, slowest)
			assert.NoError(t, r.startErr(t))
		})
		t.Run(scheme+"/after a drain", func(t *testing.T) {
			const drain = 200 * time.Millisecond
			draining := make(chan struct{})
			g := quietGroup(lifecycle.WithDrainDelay(drain), lifecycle.WithShutdownTimeout(wait),
				lifecycle.WithObserver(func(ev lifecycle.Event) {
					if ev.Kind == lifecycle.EventPhase && ev.Phase == lifecycle.PhaseDraining {
						close(draining)
					}
				}))
			s := h2Server(cert, tlsOn, okHandler)
			g.Add("http", s)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			recv(t, g.Ready(), "group ready")
			base := scheme + "://" + s.Addr().String() + "/"
			used, idle := h2Client(pool, tlsOn), h2Client(pool, tlsOn)
			t.Cleanup(used.CloseIdleConnections)
			t.Cleanup(idle.CloseIdleConnections)
			for _, tr := range []*http.Transport{used, idle} {
				res := get(&http.Client{Transport: tr, Timeout: wait}, base)
				require.NoError(t, res.err)
				require.Equal(t, 2, res.proto)
			}

			began := time.Now()
			cancel()
			recv(t, draining, "drain")
			res := get(&http.Client{Transport: used, Timeout: wait}, base) // a request during the drain
			require.NoError(t, res.err)
			assert.Equal(t, 2, res.proto)
			assert.NoError(t, recv(t, done, "Run"))
			took := time.Since(began)
			t.Logf("Run with a %v drain and HTTP/2 connections returned %v after the cancel", drain, took)
			assert.Less(t, took, drain+slowest)
		})
	}
}

// TestTLSHandshakeOnlyConnection: a TLS connection that finished its
// handshake and sent no request counts as idle after the grace, whether the
// server does the TLS (WithTLS) or the listener does.
func TestTLSHandshakeOnlyConnection(t *testing.T) {
	cert, pool := testCert(t)
	for _, viaListener := range []bool{false, true} {
		t.Run(fmt.Sprintf("TLS listener=%v", viaListener), func(t *testing.T) {
			var s *Server
			if viaListener {
				inner, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				s = New("", okHandler, WithListener(tls.NewListener(inner, tlsConfig(cert))))
			} else {
				s = New("127.0.0.1:0", okHandler, WithTLS(tlsConfig(cert)))
			}
			r := start(t, s)
			conn, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: pool})
			require.NoError(t, err, "handshake")
			defer conn.Close()

			began := time.Now()
			assert.NoError(t, recv(t, stopAsync(s, wait, nil), "Stop"))
			took := time.Since(began)
			t.Logf("Stop with a TLS connection that sent no request took %v", took)
			assert.Less(t, took, grace+time.Second, "net/http waits five seconds for such a connection")
			_, err = conn.Read(make([]byte, 1))
			assert.Error(t, err, "the connection is closed")
			assert.NoError(t, r.startErr(t))
		})
	}
}
