// Package servertest is the one table of behaviours that both server
// components, httpcomponent and grpccomponent, must pass: the same
// constructor shape, the same options with the same defaults, and the same
// rules for Start, Stop, Drain and Ready. Each package's tests call [Run]
// with a [Factory] that builds its server and a client for it.
package servertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/graceful-go/graceful/lifecycle"
)

// wait bounds every wait of the table: it only ends a test that fails, so it
// is generous (the machine is shared and slow).
const wait = 20 * time.Second

// Config is what a server is built with.
type Config struct {
	// Addr is New's address.
	Addr string
	// Listener is given with WithListener, always, even when nil.
	Listener net.Listener
	// Health is given with WithHealth when WithHealth is set (nil included).
	Health     *lifecycle.Group
	WithHealth bool
	// TLS is given with WithTLS when WithTLS is set (nil included).
	TLS     *tls.Config
	WithTLS bool
	// Handler runs in every call that Factory.Call makes, with the call's
	// context on the server; the call is answered when it returns, with
	// the context's error if it is done then. Nil answers at once.
	Handler func(ctx context.Context)
}

// Server is what both packages' New returns.
type Server interface {
	lifecycle.Component
	lifecycle.Readier
	lifecycle.Drainer
	Addr() net.Addr
}

// Health is what a health check says.
type Health int

// What a health check can say.
const (
	HealthAbsent     Health = iota // the server serves no health (HTTP: the handler answers /readyz; gRPC: UNIMPLEMENTED)
	HealthServing                  // HTTP: /readyz 200; gRPC: SERVING
	HealthNotServing               // HTTP: /readyz 503; gRPC: NOT_SERVING
)

// String returns what the check says: "absent", "serving" or "not serving".
func (h Health) String() string {
	return [...]string{"absent", "serving", "not serving"}[h]
}

// Factory builds the servers of one package, and its client.
type Factory struct {
	// New returns New(c.Addr, ..., WithListener(c.Listener), ...) with the
	// options c sets, and a handler or service that runs c.Handler.
	New func(t *testing.T, c Config) Server
	// Call makes one call to the server at addr (over TLS, trusting roots,
	// when roots is not nil) that runs Config.Handler, and returns nil once
	// it was answered in full.
	Call func(ctx context.Context, addr net.Addr, roots *x509.CertPool) error
	// Health asks the server at addr for its (overall) health.
	Health func(ctx context.Context, addr net.Addr) (Health, error)
	// Prefix begins every error of the package ("httpcomponent: ").
	Prefix string
	// Cut is what the error of a stop that cut one call in flight says of
	// it ("1 request(s) running", "1 RPC(s)").
	Cut string
}

// Run runs the table against the servers that f builds.
func Run(t *testing.T, f Factory) {
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) { row.run(t, f) })
	}
}

type row struct {
	name string
	run  func(t *testing.T, f Factory)
}

var rows = []row{
	{"New binds the address at Start, Addr tells the port", testNewAndAddr},
	{"health is off by default", testHealthDefault},
	{"WithHealth follows the Group", testWithHealth},
	{"WithHealth(nil) is an error of Start", testWithHealthNil},
	{"WithListener serves on it, closes it, never shuts it down", testWithListener},
	{"an empty address without a listener is an error of Start", testEmptyAddr},
	{"WithTLS serves TLS", testWithTLS},
	{"WithTLS without a certificate is an error of Start", testWithTLSNoCert},
	{"a port in use is an error of Start", testPortInUse},
	{"Stop before Start: nothing bound, Start returns at once", testStopBeforeStart},
	{"Stop during Start", testStopDuringStart},
	{"Start twice is an error", testStartTwice},
	{"Drain, then Stop with a call in flight: it completes", testDrainThenStop},
	{"a Stop whose context is done cuts the call in flight, classified", testCutStop},
	{"a second Stop waits for the first, and forces it when its context ends", testSecondStop},
	{"a second Stop after a clean one returns nil", testSecondStopAfter},
	{"Start's context done stops the server", testStartContext},
}

// started is a server whose Start runs in a goroutine.
type started struct {
	s    Server
	done chan error
}

// start runs s.Start and waits until s is ready; the server is stopped at
// the end of the test.
func start(t *testing.T, s Server) *started {
	t.Helper()
	r := startCtx(t, context.Background(), s)
	select {
	case <-s.Ready():
	case err := <-r.done:
		t.Fatalf("Start returned before ready: %v", err)
	case <-time.After(wait):
		t.Fatal("not ready")
	}
	return r
}

func startCtx(t *testing.T, ctx context.Context, s Server) *started {
	r := &started{s: s, done: make(chan error, 1)}
	go func() { r.done <- s.Start(ctx) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = s.Stop(ctx)
		select {
		case err := <-r.done:
			r.done <- err
		case <-time.After(wait):
			t.Error("Start did not return")
		}
	})
	return r
}

// result waits for Start to return.
func (r *started) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(wait):
		t.Fatal("Start did not return")
		return nil
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

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

// eventually waits until cond holds, checking it again every few
// milliseconds, within the generous wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func notReady(t *testing.T, s Server) {
	t.Helper()
	select {
	case <-s.Ready():
		t.Error("ready")
	default:
	}
}

// refused reports whether nothing listens on addr.
func refused(addr net.Addr) bool {
	c, err := net.DialTimeout("tcp", addr.String(), wait)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

// holding is a Config.Handler whose first call blocks until release is
// closed or its context ends, and whose other calls return at once.
type holding struct {
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
	ended   chan error // the cause of the first call's context, or nil if released
}

func newHolding() *holding {
	return &holding{entered: make(chan struct{}), release: make(chan struct{}), ended: make(chan error, 1)}
}

func (h *holding) handler(ctx context.Context) {
	if h.calls.Add(1) != 1 {
		return
	}
	close(h.entered)
	select {
	case <-h.release:
		h.ended <- nil
	case <-ctx.Done():
		h.ended <- context.Cause(ctx)
	}
}

// inFlight makes the first call and returns once it runs on the server; the
// channel receives the call's error.
func (h *holding) inFlight(t *testing.T, f Factory, addr net.Addr) <-chan error {
	t.Helper()
	called := make(chan error, 1)
	go func() { called <- f.Call(testContext(t), addr, nil) }()
	select {
	case <-h.entered:
	case err := <-called:
		t.Fatalf("the call returned before it ran: %v", err)
	case <-time.After(wait):
		t.Fatal("the call did not reach its handler")
	}
	return called
}

func testNewAndAddr(t *testing.T, f Factory) {
	s := f.New(t, Config{Addr: "127.0.0.1:0"})
	assert.Nil(t, s.Addr(), "Addr before Start")
	r := start(t, s)
	addr, ok := s.Addr().(*net.TCPAddr)
	require.True(t, ok, "Addr once ready is a *net.TCPAddr: %#v", s.Addr())
	assert.NotZero(t, addr.Port, "the port the system chose")
	require.NoError(t, f.Call(testContext(t), addr, nil))
	require.NoError(t, s.Stop(testContext(t)))
	require.NoError(t, r.result(t))
	assert.True(t, refused(addr), "the listener is closed")
	assert.Equal(t, addr, s.Addr(), "Addr after Stop")
}

func testHealthDefault(t *testing.T, f Factory) {
	s := f.New(t, Config{Addr: "127.0.0.1:0"})
	r := start(t, s)
	h, err := f.Health(testContext(t), s.Addr())
	require.NoError(t, err)
	assert.Equal(t, HealthAbsent, h)
	require.NoError(t, s.Stop(testContext(t)))
	require.NoError(t, r.result(t))
}

// gate is a component that is ready when the test opens it.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func (g *gate) Ready() <-chan struct{} { return g.ch }
func (g *gate) open()                  { g.once.Do(func() { close(g.ch) }) }
func (g *gate) Start(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
func (g *gate) Stop(context.Context) error { return nil }

func testWithHealth(t *testing.T, f Factory) {
	ctx := testContext(t)
	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithLogger(nil))
	s := f.New(t, Config{Addr: "127.0.0.1:0", Health: g, WithHealth: true})
	later := &gate{ch: make(chan struct{})}
	g.Add("server", s)
	g.Add("later", later)
	done := make(chan error, 1)
	go func() { done <- g.Start(context.Background()) }()
	t.Cleanup(func() {
		later.open()
		_ = g.Stop(testContext(t))
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("the Group's Start did not return")
		}
	})
	recv(t, s.Ready(), "the server ready")
	health := func(want Health) func() bool {
		return func() bool {
			h, err := f.Health(ctx, s.Addr())
			return err == nil && h == want
		}
	}
	eventually(t, "not serving while the Group starts", health(HealthNotServing))

	later.open()
	recv(t, g.Ready(), "the Group ready")
	eventually(t, "serving once the Group is ready", health(HealthServing))

	g.Drain() // as a parent Group does when the shutdown begins
	eventually(t, "not serving from the drain", health(HealthNotServing))
	require.NoError(t, f.Call(ctx, s.Addr(), nil), "a call during the drain is served")
	require.NoError(t, g.Stop(ctx))
	err := recv(t, done, "the Group's Start")
	done <- err // for the cleanup
	require.NoError(t, err)
}

// configError checks that Start fails with an error that begins with the
// package's prefix and says want, before ready, and closes the listener
// given.
func configError(t *testing.T, f Factory, c Config, want string) {
	t.Helper()
	s := f.New(t, c)
	err := s.Start(context.Background())
	require.Error(t, err)
	assert.ErrorContains(t, err, f.Prefix+want)
	notReady(t, s)
	assert.Nil(t, s.Addr())
	assert.NoError(t, s.Stop(testContext(t)), "Stop after a failed Start")
	if c.Listener != nil {
		_, err := c.Listener.Accept()
		assert.ErrorIs(t, err, net.ErrClosed, "the listener given is closed")
	}
}

func testWithHealthNil(t *testing.T, f Factory) {
	configError(t, f, Config{Addr: "127.0.0.1:0", WithHealth: true}, "WithHealth(nil)")
}

func testEmptyAddr(t *testing.T, f Factory) {
	configError(t, f, Config{}, "no address")
}

func testWithTLSNoCert(t *testing.T, f Factory) {
	configError(t, f, Config{Addr: "127.0.0.1:0", WithTLS: true, TLS: &tls.Config{}}, "WithTLS: the *tls.Config has no certificate")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	configError(t, f, Config{Listener: ln, WithTLS: true}, "WithTLS(nil)")
}

func testWithListener(t *testing.T, f Factory) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// A second descriptor of the socket, as systemd keeps one for the next
	// process.
	file, err := ln.(*net.TCPListener).File()
	require.NoError(t, err)
	defer file.Close()

	s := f.New(t, Config{Addr: "127.0.0.1:1", Listener: ln}) // the address is ignored
	assert.Nil(t, s.Addr(), "Addr before Start")
	r := start(t, s)
	assert.Equal(t, ln.Addr(), s.Addr(), "Addr is the listener's")
	require.NoError(t, f.Call(testContext(t), s.Addr(), nil))
	require.NoError(t, s.Stop(testContext(t)))
	require.NoError(t, r.result(t))
	_, err = ln.Accept()
	assert.ErrorIs(t, err, net.ErrClosed, "the listener given is closed")

	// The socket still listens for the other holder of its descriptor: it
	// was closed, not shut down.
	shared, err := net.FileListener(file)
	require.NoError(t, err)
	defer shared.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := shared.Accept()
		if err == nil {
			_ = c.Close()
		}
		accepted <- err
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), wait)
	require.NoError(t, err, "the socket no longer listens")
	_ = c.Close()
	require.NoError(t, recv(t, accepted, "the shared socket to accept"), "the socket was shut down")

	t.Run("closed by a Stop before Start", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		s := f.New(t, Config{Listener: ln})
		require.NoError(t, s.Stop(testContext(t)))
		_, err = ln.Accept()
		assert.ErrorIs(t, err, net.ErrClosed, "the listener given is closed")
		require.NoError(t, s.Start(context.Background()))
	})
}

func testWithTLS(t *testing.T, f Factory) {
	cert, roots := testCert(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	s := f.New(t, Config{Addr: "127.0.0.1:0", TLS: cfg, WithTLS: true})
	r := start(t, s)
	require.NoError(t, f.Call(testContext(t), s.Addr(), roots))
	assert.Len(t, cfg.NextProtos, 0, "the *tls.Config given is not changed")
	require.NoError(t, s.Stop(testContext(t)))
	require.NoError(t, r.result(t))
}

func testPortInUse(t *testing.T, f Factory) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	s := f.New(t, Config{Addr: busy.Addr().String()})
	err = s.Start(context.Background())
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	assert.ErrorContains(t, err, f.Prefix)
	notReady(t, s)
	assert.Nil(t, s.Addr())
	assert.NoError(t, s.Stop(testContext(t)), "Stop after a failed Start")
}

func testStopBeforeStart(t *testing.T, f Factory) {
	free, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := free.Addr().String()
	require.NoError(t, free.Close())

	s := f.New(t, Config{Addr: addr})
	require.NoError(t, s.Stop(testContext(t)))
	require.NoError(t, s.Start(context.Background()), "Start after Stop")
	notReady(t, s)
	assert.Nil(t, s.Addr())
	again, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the address is free: nothing was bound")
	_ = again.Close()
}

func testStopDuringStart(t *testing.T, f Factory) {
	for range 20 {
		s := f.New(t, Config{Addr: "127.0.0.1:0"})
		startErr, stopErr := make(chan error, 1), make(chan error, 1)
		go func() { startErr <- s.Start(context.Background()) }()
		go func() { stopErr <- s.Stop(context.Background()) }()
		require.NoError(t, recv(t, stopErr, "Stop"))
		require.NoError(t, recv(t, startErr, "Start"))
		if addr := s.Addr(); addr != nil {
			assert.True(t, refused(addr), "the listener is closed")
		}
	}
}

func testStartTwice(t *testing.T, f Factory) {
	s := f.New(t, Config{Addr: "127.0.0.1:0"})
	r := start(t, s)
	err := s.Start(context.Background())
	require.Error(t, err)
	assert.ErrorContains(t, err, f.Prefix+"Start called twice")
	require.NoError(t, s.Stop(testContext(t)))
	require.NoError(t, r.result(t))
}

func testDrainThenStop(t *testing.T, f Factory) {
	h := newHolding()
	s := f.New(t, Config{Addr: "127.0.0.1:0", Handler: h.handler})
	r := start(t, s)
	addr := s.Addr()
	called := h.inFlight(t, f, addr)

	s.Drain()
	require.NoError(t, f.Call(testContext(t), addr, nil), "a new call during the drain is served")
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(testContext(t)) }()
	eventually(t, "the listener closed by Stop", func() bool { return refused(addr) })
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned %v with a call in flight", err)
	default:
	}
	close(h.release)
	require.NoError(t, recv(t, h.ended, "the handler"), "the call's context was cancelled")
	require.NoError(t, recv(t, called, "the call in flight"), "the call in flight completes")
	require.NoError(t, recv(t, stopped, "Stop"))
	require.NoError(t, r.result(t))
}

func testCutStop(t *testing.T, f Factory) {
	tests := []struct {
		name  string
		ctx   func() context.Context
		is    []error
		isNot error
	}{
		{"a deadline", func() context.Context {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now())
			t.Cleanup(cancel)
			return ctx
		}, []error{lifecycle.ErrTimeout, context.DeadlineExceeded}, lifecycle.ErrForced},
		{"a Group's forced stop", func() context.Context {
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(lifecycle.ErrForced)
			return ctx
		}, []error{lifecycle.ErrForced}, lifecycle.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHolding()
			s := f.New(t, Config{Addr: "127.0.0.1:0", Handler: h.handler})
			r := start(t, s)
			called := h.inFlight(t, f, s.Addr())
			err := s.Stop(tt.ctx())
			require.Error(t, err)
			for _, want := range tt.is {
				assert.ErrorIs(t, err, want)
			}
			assert.NotErrorIs(t, err, tt.isNot)
			assert.ErrorContains(t, err, f.Prefix+"stop: "+f.Cut)
			assert.ErrorContains(t, err, " cut")
			t.Logf("Stop: %v", err)
			require.Error(t, recv(t, h.ended, "the handler's context cancelled"))
			assert.Error(t, recv(t, called, "the call"), "the call was cut")
			require.NoError(t, r.result(t))
		})
	}
}

func testSecondStop(t *testing.T, f Factory) {
	h := newHolding()
	s := f.New(t, Config{Addr: "127.0.0.1:0", Handler: h.handler})
	r := start(t, s)
	called := h.inFlight(t, f, s.Addr())

	first := make(chan error, 1)
	go func() { first <- s.Stop(context.Background()) }()
	eventually(t, "the first Stop under way", func() bool { return refused(s.Addr()) })
	select {
	case err := <-first:
		t.Fatalf("the first Stop returned %v with a call in flight", err)
	default:
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(lifecycle.ErrForced)
	err := s.Stop(ctx)
	require.ErrorIs(t, err, lifecycle.ErrForced, "the second Stop forced the stop")
	assert.ErrorContains(t, err, f.Prefix+"stop: "+f.Cut)
	assert.ErrorIs(t, recv(t, h.ended, "the handler's context cancelled"), lifecycle.ErrForced)
	errFirst := recv(t, first, "the first Stop")
	require.ErrorIs(t, errFirst, lifecycle.ErrForced, "the first Stop reports what the second cut")
	assert.Equal(t, err.Error(), errFirst.Error(), "both Stops return the same result")
	assert.Error(t, recv(t, called, "the call"), "the call was cut")
	require.NoError(t, r.result(t))
	third := s.Stop(context.Background())
	require.Error(t, third)
	assert.Equal(t, err.Error(), third.Error(), "a Stop after the end returns the same result")
}

func testSecondStopAfter(t *testing.T, f Factory) {
	s := f.New(t, Config{Addr: "127.0.0.1:0"})
	r := start(t, s)
	require.NoError(t, s.Stop(testContext(t)))
	require.NoError(t, s.Stop(testContext(t)))
	done, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, s.Stop(done), "nothing left to cut")
	require.NoError(t, r.result(t))
}

func testStartContext(t *testing.T, f Factory) {
	s := f.New(t, Config{Addr: "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	r := startCtx(t, ctx, s)
	recv(t, s.Ready(), "ready")
	cancel()
	require.NoError(t, r.result(t))
	assert.True(t, refused(s.Addr()), "the listener is closed")
	require.NoError(t, s.Stop(testContext(t)))
}

// testCert returns a self-signed certificate for 127.0.0.1 and a pool that
// trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "servertest"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
