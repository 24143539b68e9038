package httpcomponent

import (
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
// poll of http.Server.Shutdown, and what keeps hijacked connections in view.
type tracker struct {
	mu    sync.Mutex
	conns map[*conn]struct{}
	wake  chan struct{} // closed and replaced on a change, once watched

	// watched is set once somebody waits for changes; until then the hot
	// path (state changes, handlers) does not take mu.
	watched atomic.Bool
	// stopping is set when Stop begins: a connection hijacked from then on
	// is told at once.
	stopping atomic.Bool
	notify   func(net.Conn) // tells a hijacked connection; may be nil
}

func newTracker(notify func(net.Conn)) *tracker {
	return &tracker{conns: make(map[*conn]struct{}), wake: make(chan struct{}), notify: notify}
}

// conn is a connection accepted by the server's listener. Its Close is how
// the tracker learns that a connection, hijacked ones included, has ended.
type conn struct {
	net.Conn
	t        *tracker
	accepted time.Time

	state    atomic.Int32 // the last http.ConnState reported for it
	handlers atomic.Int32 // handlers running for requests on it
	readAny  atomic.Bool  // bytes were read from it
	h2       atomic.Bool  // it carried an HTTP/2 request
	hijacked atomic.Bool
	notified atomic.Bool
	closed   atomic.Bool

	hijackedAs net.Conn // what Hijack returned; written before hijacked is set

	closeOnce sync.Once
	closeErr  error
}

// add starts tracking nc.
func (t *tracker) add(nc net.Conn) *conn {
	c := &conn{Conn: nc, t: t, accepted: time.Now()}
	c.state.Store(int32(http.StateNew))
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	return c
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
	c := lookup(nc)
	if c == nil {
		return
	}
	if st == http.StateHijacked {
		c.hijackedAs = nc
		c.hijacked.Store(true)
		if t.stopping.Load() {
			t.tell(c)
		}
	}
	c.state.Store(int32(st))
	t.changed()
}

// tell calls the hijack hook for c, once.
func (t *tracker) tell(c *conn) {
	if t.notify != nil && !c.closed.Load() && c.notified.CompareAndSwap(false, true) {
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

// closeUnused closes the connections on which the client never sent a byte.
// Stop calls it only after the new-connection grace: such a connection is a
// speculative or forgotten one, and http.Server.Shutdown would wait five
// seconds for it.
func (t *tracker) closeUnused() {
	for _, c := range t.snapshot() {
		if http.ConnState(c.state.Load()) == http.StateNew && !c.readAny.Load() &&
			!c.hijacked.Load() && c.handlers.Load() == 0 {
			_ = c.Close()
		}
	}
}

// closeAll closes every connection, hijacked ones included, and returns how
// many were still open.
func (t *tracker) closeAll() int {
	n := 0
	for _, c := range t.snapshot() {
		if !c.closed.Load() {
			n++
		}
		_ = c.Close()
	}
	return n
}

func (t *tracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// empty reports whether every connection has ended. Called with t.mu held.
func (t *tracker) empty(time.Time) (bool, time.Time) { return len(t.conns) == 0, time.Time{} }

// settled reports whether shutting the server down now would drop no request
// a client has begun to send: every HTTP/1 connection is idle, closed,
// hijacked, or has its request in a handler already. http.Server drops a
// request it finishes reading after Shutdown began, so Stop waits for this
// before it calls Shutdown. A connection on which nothing was sent for grace
// since it was accepted counts as idle. Called with t.mu held; next is when a
// new connection's grace ends.
func (t *tracker) settled(grace time.Duration) func(now time.Time) (bool, time.Time) {
	return func(now time.Time) (ok bool, next time.Time) {
		ok = true
		for c := range t.conns {
			if c.closed.Load() || c.hijacked.Load() || c.h2.Load() || c.handlers.Load() > 0 {
				continue
			}
			switch http.ConnState(c.state.Load()) {
			case http.StateActive:
				ok = false // reading a request, or finishing a response
			case http.StateNew:
				if end := c.accepted.Add(grace); now.Before(end) {
					ok = false
					if next.IsZero() || end.Before(next) {
						next = end
					}
				}
			}
		}
		return ok, next
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

// lookup finds the tracked connection under nc, which is either one or a
// connection wrapping one (a *tls.Conn).
func lookup(nc net.Conn) *conn {
	for range 4 {
		switch c := nc.(type) {
		case *conn:
			return c
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.readAny.Load() {
		c.readAny.Store(true)
	}
	return n, err
}

// Close closes the connection and lets the tracker forget it.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		c.closed.Store(true)
		c.t.release(c)
	})
	return c.closeErr
}

// NetConn returns the connection the listener accepted, for handlers that
// need its concrete type after Hijack.
func (c *conn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection, as http.Server does before it closes
// a connection whose client may still be sending.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// ReadFrom keeps sendfile and splice for responses served from files.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// listener tracks the connections it accepts.
type listener struct {
	net.Listener
	t     *tracker
	quiet chan struct{} // closed once closed and no Accept is running

	closeOnce sync.Once
	closeErr  error

	mu        sync.Mutex
	closed    bool
	draining  chan struct{} // made when drain begins, closed when it ends
	pending   []*conn       // accepted by drain, not yet returned by Accept
	accepting int           // Accept calls running
	quietOnce sync.Once
}

func newListener(ln net.Listener, t *tracker) *listener {
	return &listener{Listener: ln, t: t, quiet: make(chan struct{})}
}

func (l *listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
}

// Accept accepts a connection and tracks it before it returns it, so that
// once quiet is closed every connection accepted is known to the tracker.
// After drain, it returns the connections drain accepted, then an error
// matching net.ErrClosed.
func (l *listener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if draining := l.draining; draining != nil {
		l.mu.Unlock()
		return l.handOver(draining)
	}
	if l.closed {
		l.mu.Unlock()
		return nil, l.closedErr()
	}
	l.accepting++
	l.mu.Unlock()
	nc, err := l.Listener.Accept()
	var c net.Conn
	if err == nil {
		c = l.t.add(nc)
	}
	l.mu.Lock()
	l.accepting--
	l.checkQuiet()
	draining := l.draining
	l.mu.Unlock()
	if err == nil {
		return c, nil
	}
	if draining == nil {
		return nil, err
	}
	// The socket was shut down by drain.
	return l.handOver(draining)
}

// handOver returns, once drain has ended, the next connection drain
// accepted, or an error matching net.ErrClosed when none is left.
func (l *listener) handOver(draining <-chan struct{}) (net.Conn, error) {
	<-draining
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.popLocked(); c != nil {
		return c, nil
	}
	return nil, l.closedErr()
}

func (l *listener) popLocked() net.Conn {
	if len(l.pending) == 0 {
		return nil
	}
	c := l.pending[0]
	l.pending = l.pending[1:]
	return c
}

// Close closes the listener once; http.Server and Stop both close it.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.checkQuiet()
		l.mu.Unlock()
		l.closeErr = l.Listener.Close()
	})
	return l.closeErr
}

// checkQuiet closes quiet once the listener is closed and no Accept runs.
// Called with l.mu held.
func (l *listener) checkQuiet() {
	if l.closed && l.accepting == 0 {
		l.quietOnce.Do(func() { close(l.quiet) })
	}
}
