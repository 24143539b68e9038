// Package httpcomponent runs an HTTP server as a [lifecycle.Component] that
// drains without losing a request.
//
// [New] takes the address and the handler and builds the *http.Server
// itself (plain or TLS; HTTP/1.1, HTTP/2, and unencrypted HTTP/2 when its
// Protocols ask for it); set its timeouts and the like on [Server.HTTP]
// before Start. Package grpccomponent has the same shape: New(addr, ...),
// the same options (WithListener, WithHealth, WithTLS) with the same
// defaults, and the same rules for Start, Stop and Drain. A [Server]
// implements [lifecycle.Component], [lifecycle.Readier] and
// [lifecycle.Drainer]:
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
// ReadHeaderTimeout on [Server.HTTP] to bound it sooner.
//
// A handler that streams (Server-Sent Events, long polling) learns that the
// server stops from [Stopping], before the budget runs out.
//
// On Linux the connections the kernel has queued but the server not yet
// accepted are served rather than reset. On the socket that Start binds
// itself, Stop shuts the socket down (shutdown(2) with SHUT_RD) in the same
// step as it takes the queue, so that nothing is queued after. A listener
// given with [WithListener] is never shut down, because its socket may be
// shared with another process (a socket that systemd passed, which must keep
// listening for the next instance): Stop takes what is queued on it, then
// only closes its own descriptor (to wrap a socket the Server binds and keep
// the shutdown, use [WithListenerWrapper]), so a connection that arrives in between
// stays queued for the other holders (or, if there is none, is reset by the
// close, as for http.Server). This works when the listener given is a
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
// runs. [WithTLS] with a plain listener (autocert's Manager.TLSConfig() for
// one) has none of these limits.
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
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graceful-go/graceful/internal/serverutil"
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
	srv   *http.Server
	h     *handler   // the Handler that New installed
	hooks [3]uintptr // the ConnState, ConnContext and BaseContext that New installed
	cfg   config
	err   error // a configuration error, returned by Start
	t     *tracker
	base  context.Context // the parent of request contexts, set by Start before Serve

	ready   chan struct{} // closed when the listener is bound and serving begins
	done    chan struct{} // closed when Start has returned
	stopped chan struct{} // closed when the first Stop has returned

	draining atomic.Bool
	forced   atomic.Bool   // force has begun: the listener's close is no error
	stopping chan struct{} // closed when Stop begins, or Start's context ends
	stopOnce sync.Once

	// forceCtx is cancelled, with the cause, when the stop is forced (by a
	// Stop whose context ended, or Start's context): a Stop still waiting
	// for the graceful stop then returns at once.
	forceCtx    context.Context
	forceCancel context.CancelCauseFunc
	forceOnce   sync.Once

	mu          sync.Mutex
	startCalled bool
	stopCalled  bool
	ln          *listener
	cancelBase  context.CancelCauseFunc
	cut         string // what the forced stop cut, "" if nothing
	cutCause    error  // the cause it was cut with

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

// An Option configures a Server; pass options to [New]. An option given a
// value it cannot use makes Start return an error that names it, before
// anything is bound.
type Option func(*config)

type config struct {
	ln          net.Listener
	tls         *tls.Config
	tlsSet      bool // WithTLS was given
	group       *lifecycle.Group
	healthSet   bool // WithHealth was given
	notify      func(net.Conn)
	wrap        func(net.Listener) net.Listener
	connState   func(net.Conn, http.ConnState)
	connContext func(context.Context, net.Conn) context.Context
}

// WithListener makes Start serve on ln instead of binding the address given
// to New, which is then ignored; a nil ln changes nothing (Start binds the
// address), so that a listener that may not exist, such as a socket that
// systemd may pass, can be given as it is. The Server owns ln from then on
// and closes it when it stops (or when Stop is called before Start). It never
// shuts the socket down (shutdown(2)): a socket shared with another process
// keeps listening for it (see the package documentation on the accept
// queue). ln may wrap another listener; if it has a method Unwrap()
// net.Listener that leads to a *net.TCPListener, Stop takes the connections
// queued on it through it, and a *tls.Conn it returns is served as it is.
func WithListener(ln net.Listener) Option {
	return func(c *config) { c.ln = ln }
}

// WithListenerWrapper makes Start wrap the listener it binds with wrap (a
// connection limit such as netutil.LimitListener, a PROXY protocol
// listener, tls.NewListener), and serve on what wrap returns. Unlike a
// listener given with [WithListener], the socket is the Server's own: the
// bind is still an error of Start, and on Linux Stop shuts the socket down
// once it has taken the connections queued on it, so that no connection
// queued in the meantime is reset, provided the wrapper leads back to the
// *net.TCPListener with an Unwrap() net.Listener method (see the package
// documentation). It is not applied to a listener given with WithListener.
func WithListenerWrapper(wrap func(net.Listener) net.Listener) Option {
	return func(c *config) { c.wrap = wrap }
}

// WithTLS makes the server serve HTTPS with cfg, as http.Server.ServeTLS
// does, offering HTTP/2 as the server's Protocols allow (by default it
// does). New sets [Server.HTTP]'s TLSConfig to a copy of cfg (cfg.Clone()),
// since net/http changes the configuration it serves: cfg itself is never
// changed, and changes to it after New are not seen. cfg must hold a certificate (Certificates, GetCertificate or
// GetConfigForClient; autocert's Manager.TLSConfig() does): otherwise Start
// returns an error before it binds. For certificate files, load them with
// tls.LoadX509KeyPair.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls, c.tlsSet = cfg, true }
}

// WithHealth serves the readiness and liveness probes of g, the Group that
// runs the Server, on this server, in front of its handler: /readyz answers
// with g.ReadyHandler() (503 until g is ready, 200 while it runs, 503 from
// the first moment of the drain, while the server still serves) and /livez
// with g.LiveHandler(); both take "?verbose" (see
// [lifecycle.Group.ReadyHandler]). Every other path goes to the handler. A
// nil g is an error of Start.
//
// Without WithHealth no probe is served, as package grpccomponent registers
// no health service without it. To serve the probes on other paths or
// another server, mount g.ReadyHandler() and g.LiveHandler() directly
// instead.
func WithHealth(g *lifecycle.Group) Option {
	return func(c *config) { c.group, c.healthSet = g, true }
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

// WithConnState sets a function that is called, as http.Server.ConnState
// is, when a connection changes state. The Server owns the http.Server's
// ConnState field (it tracks connections with it) and calls fn from it.
func WithConnState(fn func(net.Conn, http.ConnState)) Option {
	return func(c *config) { c.connState = fn }
}

// WithConnContext sets a function that derives the context of each
// connection's requests, as http.Server.ConnContext does. The Server owns the
// http.Server's ConnContext field and calls fn from it, with a context that
// carries the values of Start's context.
func WithConnContext(fn func(ctx context.Context, c net.Conn) context.Context) Option {
	return func(c *config) { c.connContext = fn }
}

// New returns a Server that will serve h on the TCP address addr (such as
// ":8080", or "127.0.0.1:0" for a port the system chooses) when it starts,
// unless [WithListener] gives a listener. A nil h means
// http.DefaultServeMux, as for http.Server.
//
// New builds the *http.Server that [Server.HTTP] returns. Handlers that
// begin before the drain get a ResponseWriter that wraps net/http's, so that
// a response begun once the drain has begun says "Connection: close". It has
// net/http's Flusher, Hijacker, Pusher, io.ReaderFrom and io.StringWriter,
// and http.ResponseController reaches the rest through its Unwrap method; the
// deprecated CloseNotifier is not kept. Request contexts carry the values of
// Start's context (not its cancellation).
//
// New does not fail: an empty addr without a listener, WithHealth(nil),
// WithTLS with a configuration without a certificate, and a change to a
// field of HTTP() that the Server owns are errors that Start returns, naming
// the problem, before it binds anything.
func New(addr string, h http.Handler, opts ...Option) *Server {
	s := &Server{
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
		stopping: make(chan struct{}),
	}
	s.forceCtx, s.forceCancel = context.WithCancelCause(context.Background())
	for _, opt := range opts {
		opt(&s.cfg)
	}
	s.t = newTracker(s.cfg.notify)
	if s.cfg.healthSet && s.cfg.group == nil {
		s.err = errors.New("httpcomponent: WithHealth(nil): the probes need the *lifecycle.Group that runs the Server")
	}
	if h == nil {
		h = http.DefaultServeMux
	}
	if g := s.cfg.group; g != nil {
		h = healthHandler(g, h)
	}
	s.h = &handler{s: s, next: h}
	s.srv = &http.Server{
		Addr:        addr,
		Handler:     s.h,
		ConnState:   s.connState,
		ConnContext: s.connContext,
		BaseContext: s.baseContext,
	}
	if s.cfg.tlsSet && s.cfg.tls != nil {
		// A copy: net/http adds to the NextProtos of the TLSConfig it serves.
		s.srv.TLSConfig = s.cfg.tls.Clone()
	}
	s.hooks = hookPointers(s.srv)
	return s
}

// HTTP returns the *http.Server that the Server runs, to set its timeouts
// (ReadHeaderTimeout, IdleTimeout, ...), MaxHeaderBytes, ErrorLog,
// Protocols, HTTP2, TLSConfig and the like, or to call RegisterOnShutdown,
// before Start; it must not be changed after. Its Addr is what Start binds.
//
// The Server owns four of its fields: Handler (the handler given to New,
// wrapped to drain it, and to serve the probes of [WithHealth]), ConnState
// and ConnContext (which track connections; see [WithConnState] and
// [WithConnContext] for functions of your own) and BaseContext (request
// contexts carry the values of Start's context). Start returns an error,
// before it binds, if one of them was changed. Do not call its Serve,
// ListenAndServe, Shutdown or Close: the Server does.
func (s *Server) HTTP() *http.Server { return s.srv }

// hookPointers returns the code pointers of srv's ConnState, ConnContext and
// BaseContext: functions are not comparable, their code is.
func hookPointers(srv *http.Server) [3]uintptr {
	ptr := func(fn any) uintptr { return reflect.ValueOf(fn).Pointer() }
	return [3]uintptr{ptr(srv.ConnState), ptr(srv.ConnContext), ptr(srv.BaseContext)}
}

// checkOwned reports the fields of the http.Server that the Server owns and
// that were changed since New.
func (s *Server) checkOwned() error {
	var changed []string
	if h, ok := s.srv.Handler.(*handler); !ok || h != s.h {
		changed = append(changed, "Handler (give the handler to New)")
	}
	now := hookPointers(s.srv)
	for i, what := range []string{"ConnState (use WithConnState)", "ConnContext (use WithConnContext)", "BaseContext (request contexts carry the values of Start's context)"} {
		if now[i] != s.hooks[i] {
			changed = append(changed, what)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return fmt.Errorf("httpcomponent: the Server owns these fields of HTTP(), which were changed: %s", strings.Join(changed, ", "))
}

func (s *Server) connState(nc net.Conn, st http.ConnState) {
	s.t.setState(nc, st)
	if fn := s.cfg.connState; fn != nil {
		fn(nc, st)
	}
}

func (s *Server) connContext(ctx context.Context, nc net.Conn) context.Context {
	if fn := s.cfg.connContext; fn != nil {
		ctx = fn(ctx, nc)
	}
	if c := s.t.lookup(nc); c != nil {
		ctx = context.WithValue(ctx, connKey{}, c)
	}
	return ctx
}

func (s *Server) baseContext(net.Listener) context.Context { return s.base }

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
// Start returns a configuration error (see [New]) or the error of the bind
// (a port in use matches syscall.EADDRINUSE) at once, before ready. It
// returns nil when the server ended because Stop was called,
// http.ErrServerClosed being no error, and nil at once, without binding,
// when Stop was called before it. When ctx is done before Stop, Start closes
// everything at once, cancels the contexts of the requests still running,
// and returns nil when they have ended. When Serve fails on its own (an
// accept error), Start closes every connection and returns the error. A
// second Start returns an error.
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
	base := context.WithValue(context.WithoutCancel(ctx), stoppingKey{}, (<-chan struct{})(s.stopping))
	base, cancel := context.WithCancelCause(base)
	s.base = base
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

	if s.cfg.tlsSet {
		err = s.srv.ServeTLS(ln, "", "")
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

// listen checks the configuration, then binds the listener, or takes the one
// given, and wraps it. The listener given is closed if it fails.
func (s *Server) listen() (*listener, error) {
	given := s.cfg.ln
	err := s.err
	if err == nil {
		err = s.checkOwned()
	}
	if err == nil {
		if e := serverutil.CheckAddr(s.srv.Addr, given != nil); e != nil {
			err = fmt.Errorf("httpcomponent: %w", e)
		}
	}
	if err == nil && s.cfg.tlsSet {
		if e := serverutil.CheckTLS(s.srv.TLSConfig); e != nil {
			err = fmt.Errorf("httpcomponent: %w", e)
		}
	}
	if err != nil {
		if given != nil {
			_ = given.Close()
		}
		return nil, err
	}
	if given != nil {
		return newListener(given, s.t, false), nil
	}
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return nil, fmt.Errorf("httpcomponent: %w", err)
	}
	if s.cfg.wrap != nil {
		if w := s.cfg.wrap(ln); w != nil {
			ln = w
		}
	}
	return newListener(ln, s.t, true), nil
}

// Stop stops the server gracefully within ctx and blocks until it has
// stopped or ctx is done:
//
//  1. responses carry "Connection: close" (as after Drain), the channel of
//     [Stopping] is closed, the listener is closed (new connections are
//     refused), and hijacked connections are told through the hook of
//     [WithHijackNotify]; on Linux, the connections that the kernel had
//     already queued are accepted and served rather than reset by the close
//     (see the package documentation for which listeners, and why a
//     listener given with [WithListener] is never shut down);
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
// When ctx is done first, Stop cuts what is left: it cancels the contexts of
// the requests still running (with ctx's cause), closes every connection
// left, hijacked ones included, and returns at once an error that counts
// what was cut ("stop: 2 request(s) running on 3 connection(s) cut"). It
// wraps the cause they were cut with when that is [lifecycle.ErrTimeout] or
// [lifecycle.ErrForced] (as in a Group), and otherwise both
// lifecycle.ErrTimeout and the cause. Start returns when the handlers still
// running have returned. A stop that cut nothing returns nil: nothing was
// lost.
//
// Stop may be called before Start (Start then returns nil at once and binds
// nothing; a listener given with [WithListener] is closed), during Start (it
// waits until the listener is bound, or Start failed), and more than once,
// from any goroutine. Every call waits for the same stop, bounded by its own
// ctx, and cuts what is left when its ctx is done first; every call that
// sees the stop end returns the same result: nil if nothing was cut, else
// the error that names what was cut, whichever call, or Start's context,
// cut it. Package grpccomponent's Stop follows the same rules.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	first := !s.stopCalled
	s.stopCalled = true
	started := s.startCalled
	s.mu.Unlock()
	if !first {
		select {
		case <-s.stopped:
		default:
			select {
			case <-s.stopped:
			case <-ctx.Done():
				s.force(context.Cause(ctx))
				<-s.stopped // the first Stop returns at once once forced
			}
		}
		return s.cutErr()
	}
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
	// If Start has not reported ready by now, it never will: it sees the
	// Stop before it does.
	select {
	case <-s.ready:
	default:
		select {
		case <-s.ready:
		case <-s.done:
			return nil // Start failed, or saw the Stop and did not serve
		case <-ctx.Done():
			return nil // Start, when it gets there, sees the Stop and does not serve
		case <-s.forceCtx.Done():
			return nil // as above
		}
	}
	// The stop ends at ctx's end, or when another Stop or Start's context
	// forces it.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	unwatch := context.AfterFunc(s.forceCtx, func() { cancel(context.Cause(s.forceCtx)) })
	defer unwatch()
	s.shutdown(ctx)
	return s.cutErr()
}

// cutErr returns the error of a stop that cut requests or connections, nil
// if it cut nothing.
func (s *Server) cutErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut == "" {
		return nil
	}
	return fmt.Errorf("httpcomponent: stop: %s cut: %w", s.cut, serverutil.CutCause(s.cutCause))
}

// shutdown stops the server gracefully, and forces the stop when ctx is done
// first.
func (s *Server) shutdown(ctx context.Context) {
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
			return
		}
	}
	s.force(context.Cause(ctx))
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
// then the listener and every connection are closed. The first call records
// what it cut and wakes the Stops waiting for the graceful stop.
func (s *Server) force(cause error) {
	s.forceOnce.Do(func() {
		conns, requests := s.t.inFlight()
		s.mu.Lock()
		if conns > 0 {
			s.cut = fmt.Sprintf("%d connection(s)", conns)
			if requests > 0 {
				s.cut = fmt.Sprintf("%d request(s) running on %s", requests, s.cut)
			}
			s.cutCause = cause
		}
		s.mu.Unlock()
		s.forced.Store(true)
		s.forceCancel(cause)
	})
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
