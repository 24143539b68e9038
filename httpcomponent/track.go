package httpcomponent

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// tracker knows every connection the server accepted, from Accept until it
// is closed and the handlers that ran on it have returned. It is what lets
// Stop return the moment the last response is out, instead of at the next
// poll of http.Server.Shutdown, what tells Stop whether a client has begun to
// send a request, and what keeps hijacked connections in view.
type tracker struct {
	epoch time.Time // times below are nanoseconds since epoch, plus one

	mu    sync.Mutex
	conns map[*conn]struct{}
	wake  chan struct{} // closed and replaced on a change, once watched

	// opaque maps the *tls.Conn that a listener returned, which the tracker
	// does not wrap, to its record.
	opaque sync.Map

	// watched is set once somebody waits for changes; until then the hot
	// path (state changes, handlers) does not take mu.
	watched atomic.Bool
	// stopping is set when Stop begins: a connection hijacked from then on
	// is told at once.
	stopping atomic.Bool
	notify   func(net.Conn) // tells a hijacked connection; may be nil
}

func newTracker(notify func(net.Conn)) *tracker {
	return &tracker{epoch: time.Now(), conns: make(map[*conn]struct{}), wake: make(chan struct{}), notify: notify}
}

// now returns the time on the tracker's monotonic clock, never zero.
func (t *tracker) now() int64 { return int64(time.Since(t.epoch)) + 1 }

// conn is what the tracker knows of one connection.
//
// A connection the listener returned as a plain net.Conn is wrapped (a
// *wconn), and the wrapper sees every byte read and every write. A *tls.Conn
// the listener returned is handed to net/http as it is, because net/http
// needs that concrete type for HTTP/2 and Request.TLS: the tracker then
// knows it only through the server's ConnState hook, and cannot tell whether
// a client has begun to send a request on it.
type conn struct {
	t        *tracker
	raw      *wconn    // the wrapper; nil for an opaque *tls.Conn
	opaque   *tls.Conn // the *tls.Conn the listener returned, unwrapped
	accepted int64

	tc atomic.Pointer[tls.Conn] // the *tls.Conn net/http serves, if TLS

	state    atomic.Int32 // the last http.ConnState reported for it
	idleAt   atomic.Int64 // when it last became idle (a response ended)
	lastRead atomic.Int64 // when bytes were last read from it, or 0
	writes   atomic.Int64 // writes to it
	// idleWrites is writes when it last became idle: HTTP/2 reports that
	// when the last frame of a stream is buffered, and the next write
	// flushes it.
	idleWrites atomic.Int64
	handlers   atomic.Int32 // handlers running for requests on it

	h2         atomic.Bool // it speaks HTTP/2
	protoKnown atomic.Bool // h2 is decided
	hijacked   atomic.Bool
	notified   atomic.Bool
	closed     atomic.Bool
	halfClosed atomic.Bool
	closing    atomic.Bool  // Stop closed it; net/http has yet to see it
	shutWrites atomic.Int64 // writes when Shutdown was called, plus one; 0 before

	hijackedAs net.Conn // what Hijack returned; written before hijacked is set
}

// add starts tracking nc and returns what the server should serve: a wrapper
// of nc, or nc itself when it is a *tls.Conn.
func (t *tracker) add(nc net.Conn) net.Conn {
	c := &conn{t: t, accepted: t.now()}
	c.state.Store(int32(http.StateNew))
	var served net.Conn
	switch x := nc.(type) {
	case *tls.Conn:
		c.opaque = x
		c.tc.Store(x)
		t.opaque.Store(x, c)
		served = x
	case connectionStater:
		c.raw = &wconn{Conn: nc, c: c}
		served = &stateConn{wconn: c.raw, cs: x}
	default:
		c.raw = &wconn{Conn: nc, c: c}
		served = c.raw
	}
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	return served
}

// lookup finds the record of nc, which is a connection the listener returned
// or a connection wrapping one (a *tls.Conn that ServeTLS made).
func (t *tracker) lookup(nc net.Conn) *conn {
	for range 4 {
		switch x := nc.(type) {
		case *wconn:
			return x.c
		case *stateConn:
			return x.c
		case *tls.Conn:
			if v, ok := t.opaque.Load(x); ok {
				return v.(*conn)
			}
			nc = x.NetConn()
		case interface{ NetConn() net.Conn }:
			nc = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// release forgets c once it is closed and no handler runs for it.
func (t *tracker) release(c *conn) {
	if !c.closed.Load() || c.handlers.Load() != 0 {
		return
	}
	t.mu.Lock()
	_, ok := t.conns[c]
	delete(t.conns, c)
	t.mu.Unlock()
	if c.opaque != nil {
		t.opaque.Delete(c.opaque)
	}
	if ok {
		t.changed()
	}
}

// changed wakes the waiters, if any.
func (t *tracker) changed() {
	if !t.watched.Load() {
		return
	}
	t.mu.Lock()
	close(t.wake)
	t.wake = make(chan struct{})
	t.mu.Unlock()
}

// setState records a state the server reported for nc.
func (t *tracker) setState(nc net.Conn, st http.ConnState) {
	c := t.lookup(nc)
	if c == nil {
		return
	}
	if tc, ok := nc.(*tls.Conn); ok && c.tc.Load() == nil {
		c.tc.Store(tc)
	}
	switch st {
	case http.StateActive, http.StateIdle:
		if !c.protoKnown.Load() {
			// The TLS handshake is over (no hook runs before it): ALPN says
			// whether this is HTTP/2.
			if tc := c.tc.Load(); tc != nil {
				if tc.ConnectionState().NegotiatedProtocol == "h2" {
					c.h2.Store(true)
				}
				c.protoKnown.Store(true)
			}
		}
		if st == http.StateIdle {
			c.idleWrites.Store(c.writes.Load())
			c.idleAt.Store(t.now())
		}
	case http.StateHijacked:
		c.hijackedAs = nc
		c.hijacked.Store(true)
		if c.raw == nil {
			// Its Close cannot be seen: it is tracked while the handler that
			// hijacked it runs.
			c.closed.Store(true)
		}
		if t.stopping.Load() {
			t.tell(c)
		}
	case http.StateClosed:
		if c.raw == nil {
			c.closed.Store(true)
			c.state.Store(int32(st))
			t.release(c)
		}
	}
	c.state.Store(int32(st))
	t.changed()
}

// tell calls the hijack hook for c, once.
func (t *tracker) tell(c *conn) {
	if t.notify != nil && (c.raw == nil || !c.closed.Load()) && c.notified.CompareAndSwap(false, true) {
		t.notify(c.hijackedAs)
	}
}

// tellHijacked calls the hijack hook for every hijacked connection still open.
func (t *tracker) tellHijacked() {
	for _, c := range t.snapshot() {
		if c.hijacked.Load() {
			t.tell(c)
		}
	}
}

func (t *tracker) snapshot() []*conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		cs = append(cs, c)
	}
	return cs
}

// closeAll closes every connection, hijacked ones included, below TLS, so
// that no close blocks on a client that does not read.
func (t *tracker) closeAll() {
	for _, c := range t.snapshot() {
		c.close()
	}
}

// inFlight returns how many connections are open and how many handlers run
// on them.
func (t *tracker) inFlight() (conns, requests int) {
	for _, c := range t.snapshot() {
		if c.raw != nil && c.closed.Load() && c.handlers.Load() == 0 {
			continue // closed, about to be forgotten
		}
		conns++
		requests += int(c.handlers.Load())
	}
	return conns, requests
}

// empty reports whether every connection has ended. Called with t.mu held.
func (t *tracker) empty(time.Time) (bool, time.Time) { return len(t.conns) == 0, time.Time{} }

// settle is the verdict of sweep on the HTTP/1 connections.
type settle struct {
	busy  bool    // a connection may still carry a request
	next  int64   // when to look again (a grace ends), or 0
	quiet []*conn // connections that can be closed without losing a request
}

// sweep looks at every HTTP/1 connection at time now and sorts them out:
//
//   - busy: a handler runs on it, a request is being read, bytes of a request
//     have arrived since its last response (or since it was accepted), it was
//     accepted or finished a response less than grace ago (its client is
//     about to send), or, for TLS, bytes arrived less than grace ago (its
//     handshake may still run);
//   - quiet: none of that; closing it loses nothing a client has begun to
//     send.
//
// HTTP/2 and hijacked connections are neither. Called with t.mu held.
func (t *tracker) sweep(now, grace int64) settle {
	var s settle
	wait := func(until int64) {
		s.busy = true
		if s.next == 0 || until < s.next {
			s.next = until
		}
	}
	for c := range t.conns {
		if c.closed.Load() || c.closing.Load() || c.hijacked.Load() || c.h2.Load() {
			continue
		}
		if c.handlers.Load() > 0 {
			s.busy = true
			continue
		}
		read := c.lastRead.Load()
		switch http.ConnState(c.state.Load()) {
		case http.StateActive:
			s.busy = true // reading a request, or finishing a response
		case http.StateNew:
			switch {
			case c.raw == nil || c.tc.Load() != nil:
				// TLS: the handshake reads bytes too, so only bytes that
				// keep coming tell that a request is on its way.
				if end := max(c.accepted, read) + grace; now < end {
					wait(end)
					continue
				}
			case read != 0:
				s.busy = true
				continue
			case now < c.accepted+grace:
				wait(c.accepted + grace)
				continue
			}
			s.quiet = append(s.quiet, c)
		case http.StateIdle:
			idle := c.idleAt.Load()
			if read > idle {
				s.busy = true // the next request is arriving
				continue
			}
			if end := idle + grace; now < end {
				// Its client is about to reuse it: the next request is
				// answered with Connection: close.
				wait(end)
				continue
			}
			s.quiet = append(s.quiet, c)
		}
	}
	return s
}

// h2Closable returns the HTTP/2 connections that Stop can half-close now: no
// stream is open on them, and something was written since the last stream
// ended (which flushed its last frames) and since Shutdown began (which sent
// the GOAWAY). Called with t.mu held.
func (t *tracker) h2Closable() []*conn {
	var cs []*conn
	for c := range t.conns {
		if c.raw == nil || c.closed.Load() || c.halfClosed.Load() || !c.h2.Load() {
			continue
		}
		shut, w := c.shutWrites.Load(), c.writes.Load()
		if shut != 0 && w >= shut && w > c.idleWrites.Load() &&
			http.ConnState(c.state.Load()) == http.StateIdle && c.handlers.Load() == 0 {
			cs = append(cs, c)
		}
	}
	return cs
}

// markShutdown records, on every HTTP/2 connection, how much was written
// before Shutdown: the next write carries the GOAWAY.
func (t *tracker) markShutdown() {
	for _, c := range t.snapshot() {
		if c.h2.Load() {
			c.shutWrites.Store(c.writes.Load() + 1)
		}
	}
}

// wait blocks until cond reports true, done is closed, or limit (if not zero)
// has passed, and reports whether cond became true. cond is called with t.mu
// held, again after every change, and again at the time it returns as next,
// if not zero.
func (t *tracker) wait(done <-chan struct{}, limit time.Time, cond func(now time.Time) (bool, time.Time)) bool {
	t.watched.Store(true)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		now := time.Now()
		t.mu.Lock()
		ok, next := cond(now)
		wake := t.wake
		t.mu.Unlock()
		if ok {
			return true
		}
		if !limit.IsZero() {
			if !now.Before(limit) {
				return false
			}
			if next.IsZero() || limit.Before(next) {
				next = limit
			}
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			if timer == nil {
				timer = time.NewTimer(next.Sub(now))
			} else {
				timer.Reset(next.Sub(now))
			}
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

// close closes c below TLS; net/http then ends it as a connection that
// failed.
func (c *conn) close() {
	c.closing.Store(true)
	switch {
	case c.raw != nil:
		_ = c.raw.Close()
	case c.hijacked.Load():
		_ = c.hijackedAs.Close()
		_ = c.opaque.NetConn().Close()
	default:
		_ = c.opaque.NetConn().Close()
	}
}

// halfClose ends what the server sends on an HTTP/2 connection whose GOAWAY
// is out and whose streams are done: the client reads the GOAWAY, then the
// end of the stream, and closes the connection, which ends the server's side
// at once instead of after net/http's one-second GOAWAY timer. A request the
// client sent after the GOAWAY was not processed, and the GOAWAY tells it so.
// On TLS it writes a close_notify alert, which may block (for at most the
// five seconds crypto/tls allows it) on a client that does not read.
func (c *conn) halfClose() {
	if !c.halfClosed.CompareAndSwap(false, true) {
		return
	}
	if tc := c.tc.Load(); tc != nil {
		_ = tc.CloseWrite()
		return
	}
	_ = c.raw.CloseWrite()
}

// connectionStater is the method net/http looks for to fill Request.TLS on
// a connection that is not a *tls.Conn.
type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

// wconn wraps a connection the listener accepted. It records when bytes are
// read and that writes happen, and its Close is how the tracker learns that a
// connection, hijacked ones included, has ended.
type wconn struct {
	net.Conn
	c *conn

	closeOnce sync.Once
	closeErr  error
}

// h2Preface is how an unencrypted HTTP/2 connection begins.
var h2Preface = []byte("PRI * HTTP/2.0")

func (w *wconn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if n > 0 {
		c := w.c
		if c.lastRead.Swap(c.t.now()) == 0 && c.tc.Load() == nil && !c.protoKnown.Load() {
			if bytes.HasPrefix(p[:n], h2Preface) {
				c.h2.Store(true)
			}
			c.protoKnown.Store(true)
		}
	}
	return n, err
}

func (w *wconn) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	w.wrote()
	return n, err
}

// wrote counts a write, and wakes Stop when it waits for the GOAWAY.
func (w *wconn) wrote() {
	w.c.writes.Add(1)
	if w.c.shutWrites.Load() != 0 {
		w.c.t.changed()
	}
}

// Close closes the connection and lets the tracker forget it.
func (w *wconn) Close() error {
	w.closeOnce.Do(func() {
		w.closeErr = w.Conn.Close()
		w.c.closed.Store(true)
		w.c.t.release(w.c)
	})
	return w.closeErr
}

// NetConn returns the connection the listener accepted, for handlers that
// need its concrete type after Hijack.
func (w *wconn) NetConn() net.Conn { return w.Conn }

// CloseWrite half-closes the connection, as http.Server does before it closes
// a connection whose client may still be sending.
func (w *wconn) CloseWrite() error {
	if cw, ok := w.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// ReadFrom keeps sendfile and splice for responses served from files.
func (w *wconn) ReadFrom(r io.Reader) (int64, error) {
	defer w.wrote()
	if rf, ok := w.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.Conn}, r)
}

// stateConn is a wconn whose connection reports a TLS state (a TLS
// implementation other than crypto/tls): net/http fills Request.TLS from it.
type stateConn struct {
	*wconn
	cs connectionStater
}

// ConnectionState returns the TLS state of the wrapped connection.
func (s *stateConn) ConnectionState() tls.ConnectionState { return s.cs.ConnectionState() }
