// Package httpcomponent runs an *http.Server as a [lifecycle.Component] that
// drains without losing a request.
//
// A [Server] wraps an *http.Server (plain or TLS; HTTP/1.1, HTTP/2, and
// unencrypted HTTP/2 when the server's Protocols ask for it). It implements
// [lifecycle.Component], [lifecycle.Readier] and [lifecycle.Drainer]:
//
//   - Start binds the listener before it reports ready, so a port in use is an
//     error of Start, and serves until the server has really finished: every
//     connection closed and every handler returned.
//   - Drain makes every response carry "Connection: close" (a GOAWAY on
//     HTTP/2), so that keep-alive clients move to other instances, while new
//     and in-flight requests are still served.
//   - Stop closes the listener, lets the requests in flight finish, closes idle
//     connections, and returns as soon as the last connection has ended. When
//     its context ends first, it closes what is left and cancels the contexts
//     of the requests still running, then returns at once.
//
// Hijacked connections (WebSockets and the like) are tracked too: Stop tells
// them through the hook set with [WithHijackNotify], waits for them within its
// budget, and closes them when it runs out.
//
// No request that a client has begun to send is lost by a stop that ends
// within its budget. When Stop begins, a connection on which bytes of a
// request have arrived (headers still coming, the next request of a
// keep-alive connection) is waited for, and its request served with
// "Connection: close"; so is a connection accepted, or done with a response,
// less than half a second before (its client is about to send). Only then
// does http.Server.Shutdown run, which would drop such requests. A connection
// that has been quiet since then is closed: what HTTP/1.1 cannot prevent is a
// client that sends on it at that very instant after half a second of
// silence. A request that never finishes arriving (slowloris) holds the stop
// until its budget, as a handler that never returns does; set
// http.Server.ReadHeaderTimeout to bound it sooner.
//
// A handler that streams (Server-Sent Events, long polling) learns that the
// server stops from [Stopping], before the budget runs out.
//
// On Linux the connections the kernel has queued but the server not yet
// accepted are served rather than reset, when the listener is a
// *net.TCPListener or wraps one and says so with an Unwrap() net.Listener
// method. Behind another wrapper (netutil.LimitListener, tls.NewListener, a
// PROXY protocol listener, which have no such method), and outside Linux,
// closing the listener resets them, as it does for http.Server.
//
// A listener given with [WithListener] may return *tls.Conn connections
// (tls.NewListener, autocert's Manager.Listener): they are served as they
// are, so HTTP/2 and Request.TLS work. The server then knows them only from
// net/http's ConnState hook: it cannot see bytes of a request arriving on
// them (it gives them the half-second grace, no more), its HTTP/2
// connections end a second after their last stream as net/http has them,
// and a hijacked one is waited for only while the handler that hijacked it
// runs. [WithTLS] with a plain listener (and the certificates in the
// server's TLSConfig, autocert's Manager.TLSConfig() for one) has none of
// these limits.
//
// The readiness and liveness probes of a [lifecycle.Group] can be served on
// the same server with [WithHealth], or mounted anywhere by hand:
//
//	mux.Handle("GET /readyz", group.ReadyHandler())
//	mux.Handle("GET /livez", group.LiveHandler())
package httpcomponent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

var (
	_ lifecycle.Component = (*Server)(nil)
	_ lifecycle.Readier   = (*Server)(nil)
	_ lifecycle.Drainer   = (*Server)(nil)
)

// grace is how long, when Stop begins, a connection is still expected to
// carry a request after it was accepted or after its last response ended:
// a client that has just connected is about to send its request, and a
// keep-alive client that has just had a response is about to send its next
// one. Such a request is served (with "Connection: close"); http.Server would
// drop it. After the grace, a connection on which no byte of a request has
// arrived counts as idle and is closed. It is a variable so that tests can
// read it.
var grace = 500 * time.Millisecond

// failWait bounds how long Start, when Serve fails on its own, waits for the
// connections it has just closed to end before it returns the error.
var failWait = time.Second

// Server runs an *http.Server as a lifecycle component. Create it with [New].
// A Server is started once; its methods are safe for concurrent use, and
// Stop may be called before, during or after Start, and more than once.
type Server struct {
	srv *http.Server
	cfg config
	t   *tracker

	ready   chan struct{} // closed when the listener is bound and serving begins
	done    chan struct{} // closed when Start has returned
	stopped chan struct{} // closed when the first Stop has returned

	draining atomic.Bool
	forced   atomic.Bool   // force has begun: the listener's close is no error
	stopping chan struct{} // closed when Stop begins, or Start's context ends
	stopOnce sync.Once

	mu          sync.Mutex
	startCalled bool
	stopCalled  bool
	ln          *listener
	cancelBase  context.CancelCauseFunc

	// testBeforeReady, when set, is called by Start after it has bound the
	// listener and before it reports ready.
	testBeforeReady func()
	// testListenerClosed, when set, is called by Stop once the listener is
	// closed.
	testListenerClosed func()
	// testStopWaits, when set, is called by a Stop that waits for a Start
	// in progress.
	testStopWaits func()
}

// An Option configures a Server; pass options to [New].
type Option func(*config)

type config struct {
	ln                net.Listener
	tls               bool
	certFile, keyFile string
	group             *lifecycle.Group
	notify            func(net.Conn)
}

// WithListener makes Start serve on ln instead of listening on the server's
// Addr. The Server owns ln from then on and closes it when it stops (or when
// Stop is called before Start). ln may wrap another listener; if it has a
// method Unwrap() net.Listener that leads to a *net.TCPListener, Stop drains
// the accept queue through it (see the package documentation), and a
// *tls.Conn it returns is served as it is.
func WithListener(ln net.Listener) Option {
	return func(c *config) { c.ln = ln }
}

// WithTLS makes the server serve HTTPS, as http.Server.ServeTLS does: with
// the certificate and key in the given PEM files, or, when both are empty,
// with the certificates of the server's TLSConfig. Start loads and checks
// them before it reports ready, so a bad certificate is an error of Start.
// HTTP/2 is offered as the server's Protocols allow (by default it is).
func WithTLS(certFile, keyFile string) Option {
	return func(c *config) { c.tls, c.certFile, c.keyFile = true, certFile, keyFile }
}

// WithHealth serves the readiness and liveness probes of g on this server, in
// front of its handler: GET /readyz answers with g.ReadyHandler() (200 while g
// is running, 503 from the first moment of the drain) and /livez with
// g.LiveHandler(). Every other path goes to the server's handler. To serve the
// probes on other paths or another server, mount g.ReadyHandler() and
// g.LiveHandler() directly instead.
func WithHealth(g *lifecycle.Group) Option {
	return func(c *config) { c.group = g }
}

// WithHijackNotify sets a function that Stop calls for every hijacked
// connection (a WebSocket, say) that is still open when Stop begins, and for
// every connection hijacked after that, once each, with the net.Conn that
// Hijack returned. It should tell the peer to go away (a WebSocket close
// frame) or tell the goroutine that owns the connection to finish; it must
// not block. Stop then waits for the connection to be closed, and closes it
// itself when its context ends.
func WithHijackNotify(fn func(c net.Conn)) Option {
	return func(c *config) { c.notify = fn }
}

// New returns a Server that runs srv. srv must not be used otherwise, nor
// changed after Start: Start installs its own Handler, ConnState, ConnContext
// and BaseContext on srv, which call those srv had (a nil Handler means
// http.DefaultServeMux, as for http.Server). Start listens on srv.Addr
// (":http", or ":https" with TLS, when empty) unless [WithListener] gives a
// listener.
//
// Handlers that begin before the drain get a ResponseWriter that wraps
// net/http's, so that a response begun once the drain has begun says
// "Connection: close". It has net/http's Flusher, Hijacker, Pusher,
// io.ReaderFrom and io.StringWriter, and http.ResponseController reaches the
// rest through its Unwrap method; the deprecated CloseNotifier is not kept.
func New(srv *http.Server, opts ...Option) *Server {
	s := &Server{
		srv:      srv,
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
		stopping: make(chan struct{}),
	}
	for _, opt := range opts {
		opt(&s.cfg)
	}
	s.t = newTracker(s.cfg.notify)
	return s
}

// Ready returns a channel that is closed once Start has bound the listener
// and the server accepts connections. It makes the Server a
// [lifecycle.Readier]. A Start that fails before that returns its error
// instead, and the channel is never closed.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address the server listens on, once it is ready (with
// ":0" the port is the one the system chose), and nil before.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Drain tells the server that the drain has begun: from now on every response
// whose handler starts (and every response whose handler had written nothing
// yet) carries "Connection: close", which closes an HTTP/1 connection after
// the response and sends a GOAWAY on an HTTP/2 one, so that clients open
// their next connection elsewhere. New and in-flight requests are still
// served. Drain does not block; it makes the Server a [lifecycle.Drainer].
func (s *Server) Drain() { s.draining.Store(true) }

// Start binds the listener, reports ready, and serves until the server has
// finished: Serve has returned, every connection (hijacked ones included) is
// closed, and every handler has returned.
//
// Start returns the error of the bind at once, before ready: a port in use is
// an error of Start. It returns nil when the server ended because Stop was
// called, http.ErrServerClosed being no error, and nil at once when Stop was
// called before it. When ctx is done before Stop, Start closes everything at
// once, cancels the contexts of the requests still running, and returns
// when they have ended. When Serve fails on its own (an accept error), Start
// closes every connection and returns the error. A second Start returns an
// error.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.startCalled {
		s.mu.Unlock()
		return errors.New("httpcomponent: Start called twice")
	}
	s.startCalled = true
	stopped := s.stopCalled
	s.mu.Unlock()
	defer close(s.done)
	if stopped {
		if s.cfg.ln != nil {
			_ = s.cfg.ln.Close()
		}
		return nil
	}

	ln, err := s.listen()
	if err != nil {
		return err
	}
	base, cancel := context.WithCancelCause(s.baseParent(ctx, ln))
	s.install(base)
	if s.testBeforeReady != nil {
		s.testBeforeReady()
	}
	s.mu.Lock()
	if s.stopCalled {
		s.mu.Unlock()
		cancel(nil)
		_ = ln.Close()
		return nil
	}
	s.ln = ln
	s.cancelBase = cancel
	close(s.ready)
	s.mu.Unlock()
	defer cancel(nil)

	forced := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() {
		defer close(forced)
		s.force(context.Cause(ctx))
	})
	defer func() {
		if !stopWatch() {
			<-forced
		}
	}()

	if s.cfg.tls {
		err = s.srv.ServeTLS(ln, s.cfg.certFile, s.cfg.keyFile)
	} else {
		err = s.srv.Serve(ln)
	}
	s.mu.Lock()
	stopping := s.stopCalled || s.forced.Load()
	s.mu.Unlock()
	never := make(chan struct{})
	if !errors.Is(err, http.ErrServerClosed) && !(stopping && errors.Is(err, net.ErrClosed)) {
		s.force(err)
		s.t.wait(never, time.Now().Add(failWait), s.t.empty)
		return fmt.Errorf("httpcomponent: serve: %w", err)
	}
	s.t.wait(never, time.Time{}, s.t.empty)
	return nil
}

// listen binds the listener, or checks the one given, and wraps it.
func (s *Server) listen() (*listener, error) {
	if s.cfg.tls {
		if err := s.checkCert(); err != nil {
			if s.cfg.ln != nil {
				_ = s.cfg.ln.Close()
			}
			return nil, err
		}
	}
	ln := s.cfg.ln
	if ln == nil {
		addr := s.srv.Addr
		if addr == "" {
			addr = ":http"
			if s.cfg.tls {
				addr = ":https"
			}
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("httpcomponent: %w", err)
		}
	}
	return newListener(ln, s.t), nil
}

func (s *Server) checkCert() error {
	if s.cfg.certFile != "" || s.cfg.keyFile != "" {
		if _, err := tls.LoadX509KeyPair(s.cfg.certFile, s.cfg.keyFile); err != nil {
			return fmt.Errorf("httpcomponent: %w", err)
		}
		return nil
	}
	c := s.srv.TLSConfig
	if c == nil || (len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil) {
		return errors.New("httpcomponent: WithTLS without certificate files and no certificate in the server's TLSConfig")
	}
	return nil
}

// baseParent is the parent of every request context: what the server's own
// BaseContext returns, or else ctx without its cancellation, so that request
// contexts carry the values of Start's context.
func (s *Server) baseParent(ctx context.Context, ln net.Listener) context.Context {
	if s.srv.BaseContext != nil {
		if p := s.srv.BaseContext(ln); p != nil {
			return p
		}
	}
	return context.WithoutCancel(ctx)
}

// install puts the component's hooks on the server, around the user's.
func (s *Server) install(base context.Context) {
	srv := s.srv
	next := srv.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	if g := s.cfg.group; g != nil {
		next = healthHandler(g, next)
	}
	srv.Handler = &handler{s: s, next: next}
	base = context.WithValue(base, stoppingKey{}, (<-chan struct{})(s.stopping))
	srv.BaseContext = func(net.Listener) context.Context { return base }
	userConnContext := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, nc net.Conn) context.Context {
		if userConnContext != nil {
			ctx = userConnContext(ctx, nc)
		}
		if c := s.t.lookup(nc); c != nil {
			ctx = context.WithValue(ctx, connKey{}, c)
		}
		return ctx
	}
	userConnState := srv.ConnState
	srv.ConnState = func(nc net.Conn, st http.ConnState) {
		s.t.setState(nc, st)
		if userConnState != nil {
			userConnState(nc, st)
		}
	}
}

// Stop stops the server gracefully within ctx and blocks until it has
// stopped or ctx is done:
//
//  1. responses carry "Connection: close" (as after Drain), the channel of
//     [Stopping] is closed, the listener is closed (new connections are
//     refused), and hijacked connections are told through the hook of
//     [WithHijackNotify]; on Linux, the connections that the kernel had
//     already queued are accepted and served rather than reset by the close
//     (see the package documentation for which listeners);
//  2. HTTP/1 connections that may still carry a request are waited for: one
//     whose handler runs, one on which bytes of a request have arrived, one
//     accepted or done with a response less than half a second ago; their
//     requests are served with "Connection: close". The others, quiet, are
//     closed;
//  3. http.Server.Shutdown then sends GOAWAY on HTTP/2 connections, whose
//     streams finish; request contexts are not cancelled. An HTTP/2
//     connection whose streams are done is half-closed once its GOAWAY is
//     out, so that its client closes it at once, instead of one second later
//     as net/http would;
//  4. Stop returns nil as soon as the last connection has ended: within a
//     millisecond of the last response. A hijacked connection ends when it
//     is closed, by its handler or by the hook of [WithHijackNotify].
//
// When ctx is done first, Stop cancels the contexts of the requests still
// running (with ctx's cause), closes every connection left, hijacked ones
// included, and returns at once an error that wraps ctx's cause; Start
// returns when the handlers still running have returned.
//
// Stop before Start makes Start return nil at once, without listening. Stop
// during Start waits until the listener is bound. A second Stop waits for the
// first to return, or for its own ctx, and returns nil.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopCalled {
		s.mu.Unlock()
		select {
		case <-s.stopped:
		case <-ctx.Done():
		}
		return nil
	}
	s.stopCalled = true
	started := s.startCalled
	s.mu.Unlock()
	defer close(s.stopped)
	if !started {
		if s.cfg.ln != nil {
			_ = s.cfg.ln.Close()
		}
		return nil
	}
	if s.testStopWaits != nil {
		s.testStopWaits()
	}
	select {
	case <-s.ready:
	case <-s.done:
		return nil // Start failed, or saw the Stop and did not serve
	case <-ctx.Done():
		return nil // Start, when it gets there, sees the Stop and does not serve
	}
	return s.shutdown(ctx)
}

func (s *Server) shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.stopOnce.Do(func() { close(s.stopping) })
	s.t.stopping.Store(true)
	s.ln.drain(ctx, grace)
	_ = s.ln.Close()
	// Once no Accept runs, every connection accepted is tracked.
	select {
	case <-s.ln.quiet:
	case <-ctx.Done():
	}
	if s.testListenerClosed != nil {
		s.testListenerClosed()
	}
	s.t.tellHijacked()

	// http.Server drops a request it finishes reading after Shutdown began,
	// and closes a keep-alive connection after its response: Shutdown waits
	// until no HTTP/1 connection can carry a request any more.
	var err error
	if s.settle(ctx.Done()) {
		s.t.markShutdown()
		sctx, cancel := context.WithCancel(ctx)
		shut := make(chan struct{})
		go func() {
			defer close(shut)
			_ = s.srv.Shutdown(sctx)
		}()
		defer func() {
			cancel()
			<-shut
		}()
		var closing sync.WaitGroup
		defer closing.Wait()
		if s.finish(ctx.Done(), &closing) {
			return nil
		}
	}
	n := s.t.len()
	s.force(context.Cause(ctx))
	err = fmt.Errorf("httpcomponent: stop: %d connection(s) still open, closed: %w", n, context.Cause(ctx))
	return err
}

// settle waits until no HTTP/1 connection can still carry a request, and
// closes the connections that are quiet (see tracker.sweep). It reports
// false if done was closed first.
func (s *Server) settle(done <-chan struct{}) bool {
	t := s.t
	t.watched.Store(true)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	g := int64(grace)
	for {
		now := t.now()
		t.mu.Lock()
		st := t.sweep(now, g)
		wake := t.wake
		t.mu.Unlock()
		for _, c := range st.quiet {
			c.close()
		}
		if !st.busy {
			return true
		}
		var tick <-chan time.Time
		if st.next != 0 {
			timer.Reset(time.Duration(st.next - now))
			tick = timer.C
		}
		select {
		case <-wake:
		case <-tick:
		case <-done:
			return false
		}
	}
}

// finish waits, once Shutdown has begun, until every connection has ended,
// and half-closes each HTTP/2 connection as soon as its GOAWAY is out and its
// last stream done (see conn.halfClose). It reports false if done was closed
// first. The half-closes of TLS connections run in goroutines counted by wg.
func (s *Server) finish(done <-chan struct{}, wg *sync.WaitGroup) bool {
	t := s.t
	t.watched.Store(true)
	for {
		t.mu.Lock()
		empty := len(t.conns) == 0
		cs := t.h2Closable()
		wake := t.wake
		t.mu.Unlock()
		if empty {
			return true
		}
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.halfClose()
			}()
		}
		select {
		case <-wake:
		case <-done:
			return false
		}
	}
}

// force ends everything at once: request contexts are cancelled with cause,
// then the listener and every connection are closed.
func (s *Server) force(cause error) {
	s.forced.Store(true)
	s.stopOnce.Do(func() { close(s.stopping) })
	s.mu.Lock()
	cancel, ln := s.cancelBase, s.ln
	s.mu.Unlock()
	if cancel != nil {
		cancel(cause)
	}
	if ln != nil {
		_ = ln.Close()
	}
	// Below TLS first, so that no close waits on a client that does not read.
	s.t.closeAll()
	_ = s.srv.Close()
	s.t.closeAll()
}
