package httpcomponent

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/graceful-go/graceful/lifecycle"
)

// blocking is a handler whose requests wait until release is closed.
type blocking struct {
	entered chan struct{} // one send per request that entered the handler
	release chan struct{}
	ctxErrs chan error // the request context's error when released
	silent  bool       // write no body
}

func newBlocking(n int) *blocking {
	return &blocking{entered: make(chan struct{}, n), release: make(chan struct{}), ctxErrs: make(chan error, n)}
}

func (b *blocking) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.entered <- struct{}{}
	<-b.release
	b.ctxErrs <- r.Context().Err()
	if !b.silent {
		_, _ = io.WriteString(w, "done")
	}
}

func TestStartBindsBeforeReady(t *testing.T) {
	s := newServer(http.NotFoundHandler())
	require.Nil(t, s.Addr(), "Addr before Start")
	r := start(t, s)
	addr := s.Addr().(*net.TCPAddr)
	assert.NotZero(t, addr.Port, "with :0 the bound port is reported")
	res := get(client(t), r.url)
	require.NoError(t, res.err)
	assert.Equal(t, http.StatusNotFound, res.status)
}

func TestStartWithListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := New("", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hi")
	}), WithListener(ln))
	r := start(t, s)
	assert.Equal(t, ln.Addr().String(), r.addr)
	res := get(client(t), r.url)
	require.NoError(t, res.err)
	assert.Equal(t, "hi", res.body)
}

func TestPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	s := New(busy.Addr().String(), nil)
	err = s.Start(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EADDRINUSE)
	select {
	case <-s.Ready():
		t.Fatal("ready after a failed bind")
	default:
	}
	assert.NoError(t, s.Stop(context.Background()), "Stop after a failed Start")
}

func TestStopWaitsForInFlightRequests(t *testing.T) {
	const n = 5
	h := newBlocking(n)
	s := newServer(h)
	listenerClosed := make(chan struct{})
	s.testListenerClosed = func() { close(listenerClosed) }
	r := start(t, s)
	c := client(t)
	results := make([]<-chan result, n)
	for i := range results {
		results[i] = goGet(c, r.url)
	}
	for range n {
		recv(t, h.entered, "request entered the handler")
	}

	stopped := stopAsync(s, wait, nil)
	recv(t, listenerClosed, "listener closed")
	_, err := net.Dial("tcp", r.addr)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "a new connection after the listener closed")
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned %v with requests in flight", err)
	default:
	}

	close(h.release)
	for i, ch := range results {
		res := recv(t, ch, "response")
		require.NoError(t, res.err, "request %d", i)
		assert.Equal(t, http.StatusOK, res.status)
		assert.Equal(t, "done", res.body)
		assert.NoError(t, recv(t, h.ctxErrs, "handler"), "request context cancelled during a graceful stop")
	}
	assert.NoError(t, recv(t, stopped, "Stop"))
	assert.NoError(t, r.startErr(t))
}

func TestDrainSaysConnectionClose(t *testing.T) {
	slow := newBlocking(1)
	slow.silent = true
	mux := http.NewServeMux()
	mux.Handle("/slow", slow)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	s := newServer(mux)
	r := start(t, s)

	conn, err := net.Dial("tcp", r.addr)
	require.NoError(t, err)
	defer conn.Close()
	br := bufio.NewReader(conn)
	resp := rawRequest(t, conn, br, "/")
	assert.False(t, resp.Close, "before the drain the connection is kept alive")

	inflight := goGet(client(t), r.url+"/slow")
	recv(t, slow.entered, "slow request entered")

	s.Drain()
	resp = rawRequest(t, conn, br, "/")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a request during the drain is served")
	assert.True(t, resp.Close, "a response during the drain says Connection: close")
	_, err = br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the server closes the connection cleanly, without a reset")

	res := get(client(t), r.url+"/")
	require.NoError(t, res.err, "a new connection during the drain")
	assert.Equal(t, http.StatusOK, res.status)
	assert.True(t, res.close)

	close(slow.release)
	res = recv(t, inflight, "in-flight request")
	require.NoError(t, res.err)
	assert.Equal(t, http.StatusOK, res.status, "an in-flight request completes during the drain")
	assert.True(t, res.close, "the response of an in-flight handler that had written nothing when the drain began says Connection: close")
	assert.NoError(t, recv(t, slow.ctxErrs, "handler"))
}

func TestStopBudgetCutsSlowHandler(t *testing.T) {
	entered := make(chan struct{}, 1)
	causes := make(chan error, 1)
	stopReturned := make(chan struct{})
	s := newServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
		causes <- context.Cause(r.Context())
		<-stopReturned // so that no response can slip out before the connection is closed
	}))
	r := start(t, s)
	inflight := goGet(client(t), r.url)
	recv(t, entered, "request entered")

	const budget = 300 * time.Millisecond
	errBudget := errors.New("test budget ran out")
	began := time.Now()
	ctx, cancel := context.WithTimeoutCause(context.Background(), budget, errBudget)
	defer cancel()
	err := s.Stop(ctx)
	took := time.Since(began)
	close(stopReturned)

	assert.ErrorIs(t, err, errBudget, "Stop reports that it closed connections")
	assert.GreaterOrEqual(t, took, budget, "Stop waited for the budget")
	assert.Less(t, took, budget+500*time.Millisecond, "Stop returned promptly at the budget")
	assert.ErrorIs(t, recv(t, causes, "handler context"), errBudget, "the handler's context is cancelled with the budget's cause")
	res := recv(t, inflight, "client")
	assert.Error(t, res.err, "the client sees the connection closed")
	assert.NoError(t, r.startErr(t))
}

func TestStartWaitsForHandlersAfterForcedStop(t *testing.T) {
	h := newBlocking(1) // ignores its context
	s := newServer(h)
	r := start(t, s)
	inflight := goGet(client(t), r.url)
	recv(t, h.entered, "request entered")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, s.Stop(ctx), context.DeadlineExceeded)
	assert.Error(t, recv(t, inflight, "client").err, "connection closed at the budget")
	assert.False(t, r.returned(), "Start returned while a handler still runs")
	close(h.release)
	assert.Error(t, recv(t, h.ctxErrs, "handler"), "the handler's context was cancelled")
	assert.NoError(t, r.startErr(t))
}

func TestStartContextCancelled(t *testing.T) {
	entered := make(chan struct{}, 1)
	causes := make(chan error, 1)
	s := newServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
		causes <- context.Cause(r.Context())
	}))
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	recv(t, s.Ready(), "ready")
	inflight := goGet(client(t), "http://"+s.Addr().String())
	recv(t, entered, "request entered")
	errGone := errors.New("test context gone")
	cancel(errGone)
	assert.NoError(t, recv(t, done, "Start"))
	assert.ErrorIs(t, recv(t, causes, "handler"), errGone, "request contexts are cancelled with the cause of Start's context")
	recv(t, inflight, "client") // a response or a closed connection: the handler returned as the connection closed
	err := s.Stop(context.Background())
	assert.ErrorIs(t, err, errGone, "a later Stop reports what Start's context cut")
	assert.ErrorIs(t, err, lifecycle.ErrTimeout)
	assert.ErrorContains(t, err, "httpcomponent: stop: 1 request(s) running on 1 connection(s) cut")
}

func TestHijackedConnection(t *testing.T) {
	for _, tc := range []struct {
		name        string
		closeOnTell bool // the hook closes the connection, as a WebSocket close would end it
	}{
		{"closed at the budget", false},
		{"closed when told", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			told := make(chan net.Conn, 1)
			handlerDone := make(chan struct{})
			s := newServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				defer close(handlerDone)
				conn, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("Hijack: %v", err)
					return
				}
				defer conn.Close()
				_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
				_ = brw.Flush()
				_, _ = io.Copy(io.Discard, brw) // until the connection is closed
			}), WithHijackNotify(func(c net.Conn) {
				told <- c
				if tc.closeOnTell {
					_ = c.Close()
				}
			}))
			r := start(t, s)
			conn, err := net.Dial("tcp", r.addr)
			require.NoError(t, err)
			defer conn.Close()
			br := bufio.NewReader(conn)
			_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: test\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
			require.NoError(t, err)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)

			const budget = 400 * time.Millisecond
			began := time.Now()
			stopped := stopAsync(s, budget, nil)
			recv(t, told, "hijacked connection told")
			if !tc.closeOnTell {
				select {
				case err := <-stopped:
					t.Fatalf("Stop returned %v with a hijacked connection open", err)
				default:
				}
			}
			err = recv(t, stopped, "Stop")
			took := time.Since(began)
			if tc.closeOnTell {
				assert.NoError(t, err)
				assert.Less(t, took, budget, "Stop returned when the hijacked connection closed")
			} else {
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.GreaterOrEqual(t, took, budget, "Stop waited for the hijacked connection")
			}
			_, err = br.ReadByte()
			assert.Error(t, err, "the client sees the connection closed")
			recv(t, handlerDone, "handler returned")
			assert.NoError(t, r.startErr(t))
		})
	}
}

func TestIdleConnectionsDoNotDelayStop(t *testing.T) {
	const budget = 5 * time.Second
	accepted := make(chan struct{}, 1)
	s := New("127.0.0.1:0", http.NotFoundHandler(), WithConnState(func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			accepted <- struct{}{}
		}
	}))
	r := start(t, s)
	conn, err := net.Dial("tcp", r.addr)
	require.NoError(t, err)
	defer conn.Close()
	recv(t, accepted, "connection accepted")

	began := time.Now()
	stopped := stopAsync(s, budget, nil)
	assert.NoError(t, recv(t, stopped, "Stop"))
	took := time.Since(began)
	assert.Less(t, took, grace+time.Second, "an idle connection that never sent a request held Stop")
	_, err = conn.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the idle connection is closed")
	assert.NoError(t, r.startErr(t))
}

func TestHTTP2(t *testing.T) {
	cert, pool := testCert(t)
	for _, tc := range []struct {
		name   string
		server func(h http.Handler) *Server
		client func() *http.Transport
		scheme string
	}{
		{
			name: "h2c",
			server: func(h http.Handler) *Server {
				s := New("127.0.0.1:0", h)
				s.HTTP().Protocols = new(http.Protocols)
				s.HTTP().Protocols.SetHTTP1(true)
				s.HTTP().Protocols.SetUnencryptedHTTP2(true)
				return s
			},
			client: func() *http.Transport {
				tr := &http.Transport{Protocols: new(http.Protocols)}
				tr.Protocols.SetUnencryptedHTTP2(true)
				return tr
			},
			scheme: "http",
		},
		{
			name: "TLS",
			server: func(h http.Handler) *Server {
				return New("127.0.0.1:0", h, WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
			},
			client: func() *http.Transport {
				return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
			},
			scheme: "https",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const budget = 5 * time.Second
			h := newBlocking(2)
			mux := http.NewServeMux()
			mux.Handle("/slow", h)
			mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
			s := tc.server(mux)
			r := start(t, s)
			tr := tc.client()
			t.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr, Timeout: wait}
			base := tc.scheme + "://" + r.addr

			// An idle HTTP/2 connection, and a stream in flight on another.
			res := get(c, base+"/")
			require.NoError(t, res.err)
			require.Equal(t, 2, res.proto)
			idle := &http.Client{Transport: tc.client(), Timeout: wait}
			t.Cleanup(idle.Transport.(*http.Transport).CloseIdleConnections)
			require.NoError(t, get(idle, base+"/").err)
			inflight := goGet(c, base+"/slow")
			recv(t, h.entered, "stream entered")

			began := time.Now()
			stopped := stopAsync(s, budget, nil)
			close(h.release)
			res = recv(t, inflight, "stream")
			require.NoError(t, res.err)
			assert.Equal(t, http.StatusOK, res.status)
			assert.Equal(t, 2, res.proto)
			assert.NoError(t, recv(t, stopped, "Stop"))
			took := time.Since(began)
			assert.Less(t, took, budget/2, "HTTP/2 connections held Stop")
			t.Logf("Stop took %v", took)
			assert.NoError(t, r.startErr(t))
		})
	}
}

func TestStopFast(t *testing.T) {
	const runs = 5
	var after []time.Duration
	for range runs {
		h := newBlocking(1)
		s := newServer(h)
		listenerClosed := make(chan struct{})
		s.testListenerClosed = func() { close(listenerClosed) }
		r := start(t, s)
		inflight := goGet(client(t), r.url)
		recv(t, h.entered, "request entered")
		stopped := stopAsync(s, wait, nil)
		recv(t, listenerClosed, "listener closed")
		finished := time.Now()
		close(h.release)
		require.NoError(t, recv(t, stopped, "Stop"))
		after = append(after, time.Since(finished))
		require.NoError(t, recv(t, inflight, "response").err)
		require.NoError(t, r.startErr(t))
	}
	sort.Slice(after, func(i, j int) bool { return after[i] < after[j] })
	t.Logf("Stop returned after the last request finished: %v", after)
	assert.Less(t, after[runs/2], 10*time.Millisecond, "median time from the last request's end to Stop's return")
}

func TestStopInAnyOrder(t *testing.T) {
	t.Run("before Start", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		s := New("", nil, WithListener(ln))
		require.NoError(t, s.Stop(context.Background()))
		require.NoError(t, s.Start(context.Background()), "Start after Stop")
		_, err = net.Dial("tcp", ln.Addr().String())
		assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the listener given is closed")
		select {
		case <-s.Ready():
			t.Fatal("ready after Stop")
		default:
		}
	})
	t.Run("twice", func(t *testing.T) {
		s := newServer(http.NotFoundHandler())
		r := start(t, s)
		require.NoError(t, s.Stop(context.Background()))
		require.NoError(t, s.Stop(context.Background()))
		assert.NoError(t, r.startErr(t))
	})
	t.Run("concurrently", func(t *testing.T) {
		s := newServer(http.NotFoundHandler())
		r := start(t, s)
		a, b := stopAsync(s, wait, nil), stopAsync(s, wait, nil)
		assert.NoError(t, recv(t, a, "Stop"))
		assert.NoError(t, recv(t, b, "Stop"))
		assert.NoError(t, r.startErr(t))
	})
	t.Run("during Start", func(t *testing.T) {
		s := newServer(http.NotFoundHandler())
		bound, resume := make(chan struct{}), make(chan struct{})
		s.testBeforeReady = func() {
			close(bound)
			<-resume
		}
		started := make(chan error, 1)
		go func() { started <- s.Start(context.Background()) }()
		s.testStopWaits = func() { close(resume) }
		recv(t, bound, "listener bound")
		stopped := stopAsync(s, wait, nil)
		assert.NoError(t, recv(t, started, "Start"))
		assert.NoError(t, recv(t, stopped, "Stop"))
		select {
		case <-s.Ready():
			t.Fatal("ready after Stop")
		default:
		}
	})
	t.Run("Start twice", func(t *testing.T) {
		s := newServer(http.NotFoundHandler())
		r := start(t, s)
		assert.Error(t, s.Start(context.Background()))
		require.NoError(t, s.Stop(context.Background()))
		assert.NoError(t, r.startErr(t))
	})
}

func TestServeErrorEndsStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := New("", nil, WithListener(ln))
	done := make(chan error, 1)
	go func() { done <- s.Start(context.Background()) }()
	recv(t, s.Ready(), "ready")
	require.NoError(t, ln.Close()) // behind the Server's back
	err = recv(t, done, "Start")
	assert.ErrorIs(t, err, net.ErrClosed, "Start reports that Serve failed")
	assert.NoError(t, s.Stop(context.Background()))
}

// The Server owns four fields of HTTP(): a change to one is an error of Start
// that names it, before anything is bound; the other fields are the user's.
func TestOwnedFields(t *testing.T) {
	tests := []struct {
		name   string
		change func(srv *http.Server)
		want   string
	}{
		{"Handler", func(srv *http.Server) { srv.Handler = http.NotFoundHandler() }, "Handler (give the handler to New)"},
		{"ConnState", func(srv *http.Server) { srv.ConnState = func(net.Conn, http.ConnState) {} }, "ConnState (use WithConnState)"},
		{"ConnContext", func(srv *http.Server) {
			srv.ConnContext = func(ctx context.Context, _ net.Conn) context.Context { return ctx }
		}, "ConnContext (use WithConnContext)"},
		{"BaseContext", func(srv *http.Server) { srv.BaseContext = nil }, "BaseContext"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(http.NotFoundHandler())
			tt.change(s.HTTP())
			err := s.Start(context.Background())
			require.ErrorContains(t, err, "httpcomponent: the Server owns these fields of HTTP(), which were changed: "+tt.want)
			assert.Nil(t, s.Addr(), "nothing bound")
			assert.NoError(t, s.Stop(context.Background()))
		})
	}
	t.Run("other fields are the user's", func(t *testing.T) {
		s := newServer(http.NotFoundHandler())
		s.HTTP().ReadHeaderTimeout = time.Second
		s.HTTP().MaxHeaderBytes = 1 << 12
		r := start(t, s)
		assert.Equal(t, time.Second, s.HTTP().ReadHeaderTimeout)
		res := get(client(t), r.url)
		require.NoError(t, res.err)
		assert.Equal(t, http.StatusNotFound, res.status)
	})
}

// WithConnState and WithConnContext are called from the Server's own hooks,
// and request contexts carry the values of Start's context.
func TestConnHooks(t *testing.T) {
	type key struct{}
	type startKey struct{}
	states := make(chan http.ConnState, 16)
	s := New("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "%v %v", r.Context().Value(key{}), r.Context().Value(startKey{}))
	}), WithConnState(func(_ net.Conn, st http.ConnState) { states <- st }),
		WithConnContext(func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, key{}, "conn")
		}))
	r := &running{s: s, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Start(context.WithValue(context.Background(), startKey{}, "start"))
	}()
	recv(t, s.Ready(), "ready")
	t.Cleanup(func() {
		_ = s.Stop(context.Background())
		<-r.done
	})
	res := get(client(t), "http://"+s.Addr().String())
	require.NoError(t, res.err)
	assert.Equal(t, "conn start", res.body)
	assert.Equal(t, http.StateNew, recv(t, states, "ConnState"))
	assert.Equal(t, http.StateActive, recv(t, states, "ConnState"))
}
