package httpcomponent

import (
	"context"
	"net"
	"sync"
	"time"
)

// listener tracks the connections it accepts.
type listener struct {
	net.Listener
	t     *tracker
	quiet chan struct{} // closed once closed and no Accept is running

	closeOnce sync.Once
	closeErr  error

	mu        sync.Mutex
	closed    bool
	draining  chan struct{} // made when a socket drain begins, closed when it ends
	pending   []net.Conn    // accepted by the socket drain, not yet returned by Accept
	accepting int           // Accept calls running
	quietOnce sync.Once
	sentinel  *net.TCPAddr  // the local address of the drain's own connection
	seen      chan struct{} // closed when Accept has met the sentinel
}

func newListener(ln net.Listener, t *tracker) *listener {
	return &listener{Listener: ln, t: t, quiet: make(chan struct{})}
}

func (l *listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
}

// Accept accepts a connection and tracks it before it returns it, so that
// once quiet is closed every connection accepted is known to the tracker.
// After a socket drain, it returns the connections the drain accepted, then
// an error matching net.ErrClosed. The drain's sentinel connection is closed
// and never returned.
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
	var c net.Conn
	nc, err := l.Listener.Accept()
	for err == nil && l.isSentinel(nc) {
		_ = nc.Close()
		nc, err = l.Listener.Accept()
	}
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
	// The socket was shut down by the drain.
	return l.handOver(draining)
}

// isSentinel reports whether nc is the drain's own connection. When it is,
// every connection queued before it has been accepted: the listener is
// closed at once, so that the window in which a new connection can be reset
// by the close is as short as can be.
func (l *listener) isSentinel(nc net.Conn) bool {
	l.mu.Lock()
	s := l.sentinel
	l.mu.Unlock()
	if s == nil {
		return false
	}
	ra, ok := nc.RemoteAddr().(*net.TCPAddr)
	if !ok || ra.Port != s.Port || !ra.IP.Equal(s.IP) {
		return false
	}
	l.mu.Lock()
	l.sentinel = nil
	close(l.seen)
	l.mu.Unlock()
	_ = l.Close()
	return true
}

// drainThrough serves, rather than resets, the connections queued on a
// listener that the server cannot drain at the socket (a listener that wraps
// another, or a TCP listener outside Linux). Connections queue in order: it
// connects to the listener itself and lets Accept go on, through every
// wrapper, until Accept meets that connection, then Accept closes the
// listener. Only a connection that arrives in the instant between the
// sentinel's accept and the close can still be reset. It gives up at limit
// (a wrapper that holds Accept back, a listener whose connections do not
// report the peer's TCP address), and does nothing for a listener that is
// not on TCP.
func (l *listener) drainThrough(ctx context.Context, limit time.Duration) {
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return
	}
	target := &net.TCPAddr{IP: addr.IP, Port: addr.Port, Zone: addr.Zone}
	if target.IP == nil || target.IP.IsUnspecified() {
		target.IP = net.IPv4(127, 0, 0, 1)
		if addr.IP != nil && addr.IP.To4() == nil {
			target.IP = net.IPv6loopback
		}
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var d net.Dialer
	sc, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return
	}
	defer sc.Close()
	seen := make(chan struct{})
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.sentinel = sc.LocalAddr().(*net.TCPAddr)
	l.seen = seen
	l.mu.Unlock()
	select {
	case <-seen:
	case <-ctx.Done():
		l.mu.Lock()
		l.sentinel = nil
		l.mu.Unlock()
	}
}

// handOver returns, once the socket drain has ended, the next connection it
// accepted, or an error matching net.ErrClosed when none is left.
func (l *listener) handOver(draining <-chan struct{}) (net.Conn, error) {
	<-draining
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) > 0 {
		c := l.pending[0]
		l.pending = l.pending[1:]
		return c, nil
	}
	return nil, l.closedErr()
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

// drain stops the listener without resetting the connections already queued
// on it: at the socket when it is a *net.TCPListener on Linux, else through
// its Accept (see drainThrough). It returns when the listener is closed, or
// when it gave up and the caller should close it.
func (l *listener) drain(ctx context.Context, limit time.Duration) {
	if tl, ok := l.Listener.(*net.TCPListener); ok && l.drainSocket(tl) {
		return
	}
	l.drainThrough(ctx, limit)
}
