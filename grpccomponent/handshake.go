package grpccomponent

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// A connection that grpc has accepted but on which the HTTP/2 handshake (the
// TLS handshake if any, the client preface and its SETTINGS) has not ended
// holds both GracefulStop and Stop: grpc waits for every handshake to end
// before it even sends GOAWAY on the other connections, up to
// grpc.ConnectionTimeout (120 s by default). One port scan, or one client
// that connects and says nothing, at the moment of a stop would hold the stop
// for its whole budget.
//
// handshakes is the listener the Server gives grpc: it knows the connections
// whose handshake has not ended, and once the stop has begun it ends those at
// once (their deadline is set in the past, so grpc's handshake fails and grpc
// closes them). No RPC can have been sent on such a connection: a client
// sends its first request only after the handshake. Nothing else of a
// connection is changed, but for one cost: grpc-go (1.85) reads a plain
// *net.TCPConn through a pooled buffer, and any other net.Conn through a
// buffer of its own (32 KiB by default) that an idle connection keeps.
//
// grpc sets a deadline on a connection for its handshake and clears it
// (SetDeadline with the zero time) as soon as the handshake has ended,
// whether it succeeded or failed: that call is how handshakes knows.
type handshakes struct {
	net.Listener

	mu       sync.Mutex
	pending  map[*handshakeConn]struct{} // accepted, handshake not ended
	stopping bool
}

// longAgo is a deadline that has passed: a read or write fails at once.
var longAgo = time.Unix(1, 0)

func newHandshakes(lis net.Listener) *handshakes {
	return &handshakes{Listener: lis, pending: make(map[*handshakeConn]struct{})}
}

// Accept returns the next connection, wrapped so that its handshake is known.
func (l *handshakes) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &handshakeConn{Conn: nc, l: l}
	l.mu.Lock()
	l.pending[c] = struct{}{}
	if l.stopping {
		_ = nc.SetDeadline(longAgo)
	}
	l.mu.Unlock()
	return c, nil
}

// stop ends the handshakes in progress and those to come. It does not block.
func (l *handshakes) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return
	}
	l.stopping = true
	for c := range l.pending {
		_ = c.Conn.SetDeadline(longAgo)
	}
}

// handshakeConn is a connection accepted by handshakes.
type handshakeConn struct {
	net.Conn
	l *handshakes
}

// SetDeadline sets the deadline of the connection. The first call with the
// zero time ends its handshake; until then, once the stop has begun, every
// deadline is replaced by one that has passed, so that a handshake that grpc
// begins after the stop began fails at once too.
func (c *handshakeConn) SetDeadline(t time.Time) error {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pending[c]; ok {
		switch {
		case t.IsZero():
			delete(l.pending, c)
		case l.stopping:
			t = longAgo
		}
	}
	return c.Conn.SetDeadline(t)
}

// Close closes the connection.
func (c *handshakeConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.pending, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// SyscallConn returns the raw connection of the connection wrapped, for
// grpc's channelz socket options.
func (c *handshakeConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("grpccomponent: the connection has no raw connection")
}
