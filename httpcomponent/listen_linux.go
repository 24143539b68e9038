//go:build linux

package httpcomponent

import (
	"net"
	"os"
	"syscall"
)

// drainSocket stops a TCP listener from listening without resetting the
// connections the kernel has already queued for it, and reports whether it
// could.
//
// Closing a listening socket resets every connection still in its accept
// queue: a client that connected a moment before, and may have sent its
// request already, gets a reset instead of a response. drainSocket instead,
// in one step on the socket, accepts every connection queued and shuts the
// socket down (a connection attempted from then on is refused), and keeps the
// connections for Accept to hand to the server, which serves them. Only a
// handshake that completes in the microseconds between the two system calls
// can still be reset.
func (l *listener) drainSocket(tl *net.TCPListener) bool {
	rc, err := tl.SyscallConn()
	if err != nil {
		return false
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
		// If the shutdown fails, Close still closes the socket.
		_ = syscall.Shutdown(int(fd), syscall.SHUT_RD)
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
	return true
}
