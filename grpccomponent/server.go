// Package grpccomponent runs a gRPC server as a [lifecycle.Component] that
// binds before it reports ready, reports grpc.health.v1 status, drains, and
// never hangs a shutdown.
//
// [New] takes the address and builds the *grpc.Server itself, so that it can
// install what a graceful shutdown needs (two interceptors, and the health
// service with [WithHealth]) before any service is registered: register your
// services on [Server.GRPC], then add the Server to a [lifecycle.Group].
// Package httpcomponent has the same shape: New(addr, ...), the same options
// (WithListener, WithHealth, WithTLS) with the same defaults, and the same
// rules for Start, Stop and Drain.
//
// The life of a Server in a Group:
//
//   - Start binds the listener (a port in use is a start error), reports
//     ready, and serves. With [WithHealth](g), health reports SERVING for the
//     overall status "" and every registered service once g is ready (every
//     component started), NOT_SERVING before.
//   - Drain, called by the Group when the shutdown begins, turns health to
//     NOT_SERVING at once; the server keeps serving for the drain delay.
//   - Stop calls GracefulStop: the listener closes, clients get GOAWAY, new
//     RPCs fail with UNAVAILABLE, RPCs in flight run to their end. Long-lived
//     streams are not cut. Connections still in their handshake (a port scan,
//     a client that never sends the HTTP/2 preface) are closed at once: grpc
//     would otherwise wait for them, up to grpc.ConnectionTimeout (120 s),
//     before it even sends GOAWAY.
//   - When Stop's context is done (the shutdown budget ran out), the RPCs
//     still running are cut: their contexts are cancelled and the connections
//     closed (grpc's Stop). Their clients see UNAVAILABLE, which they may retry
//     on another instance. Stop returns at most 80 ms later, whatever the
//     handlers do, with an error that counts the RPCs cut and names their
//     methods, and matches [lifecycle.ErrTimeout] ([lifecycle.ErrForced] when
//     a repeated signal cut the stop short): the exit code then says that
//     work was lost, as for an HTTP server.
package grpccomponent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/graceful-go/graceful/internal/serverutil"
	"github.com/graceful-go/graceful/lifecycle"
)

// hardStopGrace is how long Stop waits, once its context is done, for the
// RPCs to return after their contexts were cancelled and their connections
// closed. It is below half the lifecycle Group's stop grace (200 ms, of which
// one Stop may take 100 ms), so that the Group hears Stop's own error, which
// names the RPCs still running, rather than abandoning Stop. It is a variable
// so that tests can read it; nothing changes it.
var hardStopGrace = 80 * time.Millisecond

// Server is a gRPC server run as a [lifecycle.Component]. It also implements
// [lifecycle.Readier] (ready once the listener is bound and the server
// serves) and [lifecycle.Drainer] (health turns NOT_SERVING). Create one with
// [New].
//
// A Server runs once: Start after Stop returns nil at once without serving.
// Its methods are safe to call from several goroutines, in any order.
type Server struct {
	addr   string
	err    error // a configuration error, returned by Start
	grpc   *grpc.Server
	health *health.Server // nil without WithHealth
	group  *lifecycle.Group
	rpcs   tracker

	ready   chan struct{} // closed when the listener is bound and the server serves
	settled chan struct{} // closed when Start has bound the listener or given up

	mu       sync.Mutex
	lis      net.Listener // given by WithListener, or bound by Start
	hs       *handshakes  // lis as grpc serves it; nil until Start serves
	bound    net.Addr
	started  bool          // Start was called
	serving  bool          // Start bound the listener and calls Serve
	stopping bool          // Stop was called
	graceful chan struct{} // closed when GracefulStop has returned; nil before the stop began
	hard     chan struct{} // closed when grpc's Stop has returned; nil unless forced
	finished bool          // Start has seen GracefulStop return: nothing more to force
}

var (
	_ lifecycle.Component = (*Server)(nil)
	_ lifecycle.Readier   = (*Server)(nil)
	_ lifecycle.Drainer   = (*Server)(nil)
)

// An Option configures a Server; pass options to [New]. An option given a
// value it cannot use makes Start return an error that names it, before
// anything is bound.
type Option func(*config)

type config struct {
	lis       net.Listener
	group     *lifecycle.Group
	healthSet bool // WithHealth was given
	tls       *tls.Config
	tlsSet    bool // WithTLS was given
	grpcOpts  []grpc.ServerOption
}

// WithListener makes the Server serve on ln instead of binding the address
// given to New, which is then ignored; a nil ln changes nothing (Start binds
// the address), so that a listener that may not exist, such as a socket that
// systemd may pass, can be given as it is. The Server owns ln from then on:
// it closes it when it stops, even if it never started. It never shuts the
// socket down (shutdown(2)), so a socket shared with another process, such
// as one systemd passed, keeps listening for it.
func WithListener(ln net.Listener) Option {
	return func(c *config) { c.lis = ln }
}

// WithHealth registers the grpc.health.v1 service, driven by g, the Group
// that runs the Server: NOT_SERVING until g is ready (every component has
// started), SERVING from then on, and NOT_SERVING again, for good, from the
// first moment of the drain (the Group calls [Server.Drain]) while the server
// still serves, and once Stop is called. The status holds for the overall
// server ("") and for every service registered before Start; another name
// gets NOT_FOUND. A nil g is an error of Start.
//
// Without WithHealth the service is not registered, as package httpcomponent
// serves no probe without it; register one of your own on [Server.GRPC] if
// you like. The SERVING status is set by a goroutine of Start just after g's
// Ready channel is closed: a client that must see it should watch the health
// rather than check it once right after g is ready.
func WithHealth(g *lifecycle.Group) Option {
	return func(c *config) { c.group, c.healthSet = g, true }
}

// WithTLS makes the server serve TLS with cfg (its certificates, client
// authentication and so on), through grpc.Creds(credentials.NewTLS(cfg)),
// which copies cfg and offers HTTP/2 by ALPN. cfg must hold a certificate
// (Certificates, GetCertificate or GetConfigForClient): otherwise Start
// returns an error before it binds. Do not also pass grpc.Creds with
// [WithServerOptions].
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls, c.tlsSet = cfg, true }
}

// WithServerOptions passes opts to grpc.NewServer, after the Server's own
// interceptors (installed with grpc.ChainUnaryInterceptor and
// grpc.ChainStreamInterceptor, so interceptors of every kind can be added).
// Set grpc.ConnectionTimeout below the shutdown budget: grpc waits for the
// connections still in their handshake when a stop begins.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return func(c *config) { c.grpcOpts = append(c.grpcOpts, opts...) }
}

// New returns a Server that will listen on the TCP address addr (such as
// ":9090", or "127.0.0.1:0" for a port the system chooses) when it starts,
// unless [WithListener] gives a listener. It creates the *grpc.Server, with
// the options given by [WithServerOptions] and [WithTLS], and registers the
// grpc.health.v1 service on it with [WithHealth]. Register your services on
// [Server.GRPC] before Start.
//
// New does not fail: an empty addr without a listener, WithHealth(nil), and
// WithTLS with a configuration without a certificate are errors that Start
// returns, naming the problem, before it binds anything.
func New(addr string, opts ...Option) *Server {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	s := &Server{
		addr:    addr,
		group:   c.group,
		lis:     c.lis,
		ready:   make(chan struct{}),
		settled: make(chan struct{}),
	}
	var errs []error
	if err := serverutil.CheckAddr(addr, c.lis != nil); err != nil {
		errs = append(errs, err)
	}
	if c.healthSet && c.group == nil {
		errs = append(errs, errors.New("WithHealth(nil): health needs the *lifecycle.Group that runs the Server"))
	}
	grpcOpts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.rpcs.unary),
		grpc.ChainStreamInterceptor(s.rpcs.stream),
	}
	grpcOpts = append(grpcOpts, c.grpcOpts...)
	if c.tlsSet {
		if err := serverutil.CheckTLS(c.tls); err != nil {
			errs = append(errs, err)
		} else {
			grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(c.tls)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.err = fmt.Errorf("grpccomponent: %w", err)
	}
	s.grpc = grpc.NewServer(grpcOpts...)
	if s.group != nil {
		s.health = health.NewServer()
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		healthpb.RegisterHealthServer(s.grpc, s.health)
	}
	return s
}

// GRPC returns the underlying *grpc.Server, to register services on before
// Start. Do not call its Serve, Stop or GracefulStop: the Server does.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Addr returns the address the Server listens on once it is ready (with port
// 0, the port the system chose; with [WithListener], the listener's), and nil
// before. It does not block.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound
}

// Ready returns a channel that is closed once Start has bound the listener
// and the server serves. It makes a Server a [lifecycle.Readier]. A Start
// that fails before that returns its error instead, and the channel is never
// closed.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Start binds the listener, reports ready, and serves until the server has
// stopped. It blocks until then, and returns only when the server has really
// finished: every connection is closed and every RPC handler has returned
// (Stop, by contrast, gives up on handlers at its deadline).
//
// Start returns nil when the server was stopped by Stop, and nil at once,
// without binding, when Stop came first. When ctx is done before Stop, it
// stops the server at once, as a Stop with a done context would, and
// returns nil. It returns a configuration error (see [New]) or the error of
// the listen (a port in use matches syscall.EADDRINUSE) before ready: Ready's
// channel is not closed then. If serving fails on its own (the listener
// fails), Start stops the server at once and returns the error without
// waiting for the handlers; Stop waits for them. A second Start returns an
// error.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("grpccomponent: Start called twice")
	}
	s.started = true
	if s.stopping {
		s.mu.Unlock()
		close(s.settled)
		return nil
	}
	lis := s.lis
	s.mu.Unlock()

	if s.err != nil {
		if lis != nil {
			_ = lis.Close()
		}
		close(s.settled)
		s.grpc.Stop() // never served: returns at once
		return s.err
	}
	if lis == nil {
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", s.addr)
		if err != nil {
			close(s.settled)
			s.grpc.Stop() // never served: returns at once
			return fmt.Errorf("grpccomponent: %w", err)
		}
		lis = l
	}
	s.mu.Lock()
	if s.stopping { // Stop came while the listener was being bound
		s.mu.Unlock()
		_ = lis.Close()
		close(s.settled)
		return nil
	}
	s.lis, s.bound, s.serving = lis, lis.Addr(), true
	s.hs = newHandshakes(lis)
	hs := s.hs
	s.mu.Unlock()
	close(s.settled)

	services := s.services()
	s.setStatus(services, healthpb.HealthCheckResponse_NOT_SERVING)
	served, watched := make(chan struct{}), make(chan struct{})
	go s.watch(ctx, services, served, watched)
	close(s.ready)

	err := s.grpc.Serve(hs)
	close(served)
	<-watched
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		s.force(err)
		return fmt.Errorf("grpccomponent: serve: %w", err)
	}
	// Serve returned because the server was stopped (by Stop, by the
	// watcher on ctx, or by a direct call on the *grpc.Server). GracefulStop
	// returns only when every handler has.
	<-s.beginStop()
	s.mu.Lock()
	s.finished = true
	hard := s.hard
	s.mu.Unlock()
	if hard != nil {
		<-hard
	}
	return nil
}

// watch sets the health status to SERVING once the Group is ready, and stops
// the server if ctx is done before it has stopped; it returns when served is
// closed.
func (s *Server) watch(ctx context.Context, services []string, served <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var gate <-chan struct{}
	if s.health != nil {
		gate = s.group.Ready()
	}
	for {
		select {
		case <-gate:
			// Ignored by the health server once Drain or Stop has shut it down.
			s.setStatus(services, healthpb.HealthCheckResponse_SERVING)
			gate = nil
		case <-ctx.Done():
			s.force(context.Cause(ctx))
			return
		case <-served:
			return
		}
	}
}

// Drain turns the health status of [WithHealth] to NOT_SERVING, for the
// overall status and every service, and keeps it there (without WithHealth
// it does nothing); the server goes on serving. The Group
// calls it when the shutdown begins, before the drain delay. It does not
// block. It makes a Server a [lifecycle.Drainer].
func (s *Server) Drain() {
	if s.health != nil {
		s.health.Shutdown()
	}
}

// Stop stops the server gracefully, bounded by ctx, and blocks until it has
// stopped or ctx is done. Health turns NOT_SERVING and grpc's GracefulStop
// begins: the listener closes, clients are sent GOAWAY, new RPCs fail with
// UNAVAILABLE, and the RPCs in flight, streams included, run on. Health
// Watch streams are ended at once: they would otherwise hold the graceful
// stop up until the deadline.
//
// A connection that has not finished its handshake (TLS, then the HTTP/2
// preface and SETTINGS) when the stop begins, or that is accepted after, is
// closed at once: no RPC can have been sent on it, and grpc would wait for it
// (up to grpc.ConnectionTimeout, 120 s by default) before it tells the other
// clients to go away.
//
// Stop returns nil once every RPC has returned and the connections are closed.
// When ctx is done first, Stop cuts the RPCs still running: it cancels their
// contexts (with ctx's cause) and closes every connection (grpc's Stop), then
// waits at most 80 ms more, and never longer, whatever the handlers do. The
// client of an RPC cut sees UNAVAILABLE: a handler's error that reports its
// cancelled context (ctx.Err(), or a CANCELLED status) is replaced by an
// UNAVAILABLE status; other errors, and a nil one, are kept. Stop then
// returns an error that counts the RPCs cut and names their methods ("stop:
// 2 RPC(s) (/pkg.Svc/Watch ×2) cut"), and names the handlers still running
// if any. It wraps the cause the RPCs were cut with when that is
// [lifecycle.ErrTimeout] or [lifecycle.ErrForced] (as in a Group), and
// otherwise both lifecycle.ErrTimeout and the cause. A stop that cut nothing
// returns nil once everything has ended, even if ctx was done: nothing was
// lost.
//
// Health Watch streams have seen NOT_SERVING at the drain; with no drain
// delay, a watcher may see its stream end first instead (with UNAVAILABLE).
// They are not counted as cut.
//
// Stop may be called before Start (Start then returns nil at once and binds
// nothing; a listener given with [WithListener] is closed), during Start (it
// waits until the listener is bound, or Start failed), and more than once,
// from any goroutine. Every call waits for the same stop, bounded by its own
// ctx, and cuts what is left when its ctx is done first; every call that
// sees the stop end returns the same result: nil if nothing was cut, else
// the error that names what was cut, whichever call, or Start's context,
// cut it. Package httpcomponent's Stop follows the same rules.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	first := !s.stopping
	s.stopping = true
	started, serving := s.started, s.serving
	lis := s.lis
	s.mu.Unlock()
	if !serving {
		if started {
			// Start is binding the listener, or failed to: it closes the
			// listener itself once it sees the stop.
			select {
			case <-s.settled:
			default:
				select {
				case <-s.settled:
				case <-ctx.Done():
					return nil
				}
			}
		} else if first && lis != nil {
			_ = lis.Close() // the listener of WithListener, never served
		}
		s.Drain()
		s.grpc.Stop() // never served: returns at once
		return nil
	}

	graceful := s.beginStop()
	select {
	case <-graceful:
		// Not forced by this Stop, but maybe by another, or by Start's
		// context.
		return s.cutErr()
	case <-ctx.Done():
	}
	hard := s.force(context.Cause(ctx))
	t := time.NewTimer(hardStopGrace)
	defer t.Stop()
	for _, ch := range []<-chan struct{}{graceful, hard} {
		select {
		case <-ch:
		case <-t.C:
			return s.stuck()
		}
	}
	return s.cutErr()
}

// cutErr returns the error of a stop that cut RPCs, nil if none was cut.
func (s *Server) cutErr() error {
	cut, cause := s.rpcs.cutReport()
	if cut == "" {
		return nil
	}
	return fmt.Errorf("grpccomponent: stop: %s cut: %w", cut, serverutil.CutCause(cause))
}

// errStopping is the cause of the cancelled context of a health Watch stream
// that Stop ended.
var errStopping = errors.New("grpccomponent: server stopping")

// beginStop begins the graceful stop once, and returns a channel closed when
// it has ended. The server must be serving.
func (s *Server) beginStop() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.graceful != nil {
		return s.graceful
	}
	s.Drain()
	if s.health != nil {
		s.rpcs.end(healthpb.Health_Watch_FullMethodName, errStopping)
	}
	// GracefulStop sends no GOAWAY until every handshake has ended.
	s.hs.stop()
	done := make(chan struct{})
	s.graceful = done
	go func() {
		defer close(done)
		s.grpc.GracefulStop()
	}()
	return done
}

// force cancels the RPCs still running and closes the connections, once, and
// returns a channel closed when grpc's Stop has returned. The server must be
// serving.
func (s *Server) force(cause error) <-chan struct{} {
	s.beginStop()
	s.rpcs.cutAll(cause)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hard == nil {
		done := make(chan struct{})
		s.hard = done
		if s.finished {
			close(done) // everything has ended: nothing to force
		} else {
			go func() {
				defer close(done)
				s.grpc.Stop()
			}()
		}
	}
	return s.hard
}

// stuck returns the error of a Stop that gave up on handlers that did not
// return once cut.
func (s *Server) stuck() error {
	cut, cause := s.rpcs.cutReport()
	prefix := "grpccomponent: stop: "
	if cut != "" {
		prefix += cut + " cut; "
	}
	methods := s.rpcs.running()
	if len(methods) == 0 {
		return fmt.Errorf("%sserver not stopped %v after the stop deadline: %w", prefix, hardStopGrace, serverutil.CutCause(cause))
	}
	return fmt.Errorf("%s%d RPC handler(s) still running %v after the stop deadline (%s): %w",
		prefix, len(methods), hardStopGrace, strings.Join(methods, ", "), serverutil.CutCause(cause))
}

// services returns the names of the services registered on the server, but
// the health service's own.
func (s *Server) services() []string {
	var names []string
	for name := range s.grpc.GetServiceInfo() {
		if name != healthpb.Health_ServiceDesc.ServiceName {
			names = append(names, name)
		}
	}
	return names
}

// setStatus sets the health status of the overall server and of services.
func (s *Server) setStatus(services []string, st healthpb.HealthCheckResponse_ServingStatus) {
	if s.health == nil {
		return
	}
	for _, name := range services {
		s.health.SetServingStatus(name, st)
	}
	s.health.SetServingStatus("", st)
}
