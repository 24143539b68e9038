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
	owned bool          // bound by the Server: its socket may be shut down
	quiet chan struct{} // closed once closed and no Accept is running

	closeOnce sync.Once
	closeErr  error

	mu        sync.Mutex
	closed    bool
	draining  chan struct{} // made when a socket drain begins, closed when it ends
	pending   []net.Conn    // accepted by the socket drain, not yet returned by Accept
	accepting int           // Accept calls running
	quietOnce sync.Once
	took      chan struct{} // closed and replaced after each Accept, during drainQueue
	shut      bool          // drainQueue shut the socket down
}

// newListener wraps ln. owned says whether the Server bound it itself: only
// then may its socket be shut down; a listener given may share its socket
// with another process.
func newListener(ln net.Listener, t *tracker, owned bool) *listener {
	return &listener{Listener: ln, t: t, owned: owned, quiet: make(chan struct{})}
}

func (l *listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
}

// Accept accepts a connection and tracks it before it returns it, so that
// once quiet is closed every connection accepted is known to the tracker.
// After a socket drain, it returns the connections the drain accepted, then
// an error matching net.ErrClosed.
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
	if err == nil {
		c = l.t.add(nc)
	}
	l.mu.Lock()
	l.acceptedLocked()
	l.accepting--
	l.checkQuiet()
	draining, shut := l.draining, l.shut || l.closed
	l.mu.Unlock()
	if err == nil {
		return c, nil
	}
	if draining == nil {
		if shut {
			return nil, l.closedErr()
		}
		return nil, err
	}
	// The socket was shut down, or closed, after the socket drain.
	return l.handOver(draining)
}

// unwrapTCP returns the *net.TCPListener under ln: ln itself, or what a chain
// of wrappers with an Unwrap() net.Listener method leads to; nil if none.
func unwrapTCP(ln net.Listener) *net.TCPListener {
	for range 16 {
		switch x := ln.(type) {
		case *net.TCPListener:
			return x
		case interface{ Unwrap() net.Listener }:
			ln = x.Unwrap()
		default:
			return nil
		}
	}
	return nil
}

// accepted wakes drainQueue after an Accept. Called with l.mu held.
func (l *listener) acceptedLocked() {
	if l.took != nil {
		close(l.took)
		l.took = make(chan struct{})
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

// drain takes the connections already queued on the listener, so that
// closing it does not reset them, on Linux, when the listener is a
// *net.TCPListener (see drainSocket) or wraps one and says so with an
// Unwrap() net.Listener method (see drainQueue). A socket the Server bound
// itself is shut down in the same step, so that nothing is queued after; a
// listener given is never shut down, since its socket may be shared with
// another process (systemd's socket activation), for which shutdown(2) would
// stop it listening too. Otherwise drain does nothing, and closing the
// listener resets them. The caller closes the listener after it.
func (l *listener) drain(ctx context.Context, limit time.Duration) {
	if tl, ok := l.Listener.(*net.TCPListener); ok {
		l.drainSocket(tl, l.owned)
		return
	}
	if tl := unwrapTCP(l.Listener); tl != nil {
		ctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		l.drainQueue(ctx, tl, l.owned)
	}
}
