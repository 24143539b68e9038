//go:build linux

package httpcomponent

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// drainSocket takes the connections the kernel has already queued for a TCP
// listener, so that closing it does not reset them.
//
// Closing a listening socket resets every connection still in its accept
// queue: a client that connected a moment before, and may have sent its
// request already, gets a reset instead of a response. drainSocket instead,
// in one step on the socket, accepts every connection queued and, when shut
// is set, shuts the socket down (a connection attempted from then on is
// refused), and keeps the connections for Accept to hand to the server,
// which serves them. Only a handshake that completes in the microseconds
// between the two system calls can still be reset. Without shut (a socket
// that may be shared with another process), a connection that arrives before
// the caller closes the listener stays queued for the other holders of the
// socket, or is reset by the close if there is none.
func (l *listener) drainSocket(tl *net.TCPListener, shut bool) {
	rc, err := tl.SyscallConn()
	if err != nil {
		return
	}
	done := make(chan struct{})
	defer close(done)
	l.mu.Lock()
	l.draining = done
	l.mu.Unlock()
	var fds []int
	_ = rc.Control(func(fd uintptr) {
		for {
			nfd, _, err := syscall.Accept4(int(fd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
			if err == syscall.EINTR || err == syscall.ECONNABORTED {
				continue
			}
			if err != nil {
				break // EAGAIN: the queue is empty
			}
			fds = append(fds, nfd)
		}
		if shut {
			// If the shutdown fails, Close still closes the socket.
			_ = syscall.Shutdown(int(fd), syscall.SHUT_RD)
		}
	})
	var conns []net.Conn
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "")
		nc, err := net.FileConn(f)
		_ = f.Close()
		if err == nil {
			conns = append(conns, l.t.add(nc))
		}
	}
	l.mu.Lock()
	l.pending = append(l.pending, conns...)
	l.mu.Unlock()
}

// drainQueue takes the connections queued on a TCP listener that the server
// reaches only through a wrapper (TLS, a connection limit, the PROXY
// protocol), so that closing it does not reset them. Those must go through
// the wrapper's Accept, so drainSocket cannot take them: drainQueue lets the
// server's Accept loop go on until it finds the kernel's accept queue empty,
// and then, when shut is set (a socket the Server bound and wrapped with
// WithListenerWrapper), shuts the socket down in the same step on the
// socket: only a handshake that completes in the microseconds between the two
// system calls can still be reset. Without shut (a listener given), it
// returns there and the caller closes the listener: a connection that arrives
// before the close takes effect stays queued for the other holders of the
// socket, or is reset if there is none. When ctx ends first (a wrapper that
// holds Accept back), it returns too, and the close resets what is left.
func (l *listener) drainQueue(ctx context.Context, tl *net.TCPListener, shut bool) {
	rc, err := tl.SyscallConn()
	if err != nil {
		return
	}
	l.mu.Lock()
	l.took = make(chan struct{})
	l.mu.Unlock()
	for {
		l.mu.Lock()
		took := l.took
		l.mu.Unlock()
		var done bool
		cerr := rc.Control(func(fd uintptr) {
			n, ok := queued(int(fd))
			if !ok || n == 0 {
				if shut {
					l.mu.Lock()
					l.shut = true // the Accept that fails now fails because of it
					l.mu.Unlock()
					_ = syscall.Shutdown(int(fd), syscall.SHUT_RD)
				}
				done = true
			}
		})
		if cerr != nil || done {
			return
		}
		select {
		case <-took:
		case <-ctx.Done():
			return
		}
	}
}

// queued returns the length of the accept queue of the listening TCP socket
// fd, which Linux reports in tcp_info's tcpi_unacked, and whether it could.
func queued(fd int) (n uint32, ok bool) {
	const (
		tcpListen     = 10 // TCP_LISTEN, tcp_info's tcpi_state of a listening socket
		offsetUnacked = 24 // of tcpi_unacked in struct tcp_info
	)
	var info [104]byte
	size := uint32(len(info))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 || size < offsetUnacked+4 || info[0] != tcpListen {
		return 0, false
	}
	return binary.NativeEndian.Uint32(info[offsetUnacked:]), true
}
