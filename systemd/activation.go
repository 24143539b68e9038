package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// listenFdsStart is the first file descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFdsStart = 3

// Listeners are the listening sockets passed to the process by socket
// activation (a systemd .socket unit, or systemd-socket-activate), each under
// the name its unit gives it (FileDescriptorName=; without one systemd names
// every socket of a unit after the unit, "name.socket"). Get them with
// [Activation].
//
// Take each socket once with [Listeners.Listen] or [Listeners.Inherited].
// Sockets that no call takes stay open in this process, marked close-on-exec
// so that no child inherits them, until [Listeners.Close] or the exit; systemd
// keeps its own descriptor of each, so connections to a socket nobody takes
// wait in its queue for the next process that does.
//
// The methods of Listeners are safe for concurrent use.
type Listeners struct {
	mu     sync.Mutex
	socks  []*inherited
	note   string // why the sockets in the environment are not used, for bind errors
	closed bool
}

// inherited is one socket passed by systemd.
type inherited struct {
	name string
	fd   int
	file *os.File // nil once taken or closed
}

// Activation returns the sockets passed by socket activation, read from the
// environment (see [WithGetenv]; the other options are ignored):
// LISTEN_PID must be this process's id, LISTEN_FDS the number of sockets
// (file descriptors 3, 4, ...), and LISTEN_FDNAMES, if set, their names,
// separated by colons (without it, each is named "unknown"). It marks every
// socket close-on-exec. It does not block, and leaves the environment as it is.
//
// When the process was not activated (LISTEN_PID and LISTEN_FDS are unset,
// LISTEN_FDS is 0, or LISTEN_PID is another process's, which inherited the
// environment from it) the Listeners hold no socket and
// [Listeners.Listen] binds addresses itself. Activation returns an error, and
// no Listeners, when the environment is malformed: one of LISTEN_PID and
// LISTEN_FDS set without the other, either not a positive number, LISTEN_FDNAMES
// naming another number of sockets than LISTEN_FDS, or a file descriptor that
// is not open.
func Activation(opts ...Option) (*Listeners, error) {
	c := newConfig(opts)
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	n, names, note, err := parseListenEnv(c.getenv, c.pid)
	if err != nil {
		return nil, err
	}
	fds := make([]int, n)
	for i := range fds {
		fds[i] = listenFdsStart + i
	}
	l, err := inherit(fds, names)
	if err != nil {
		return nil, err
	}
	l.note = note
	return l, nil
}

// parseListenEnv reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES. It returns
// the number of sockets passed to this process (pid) and their names, or 0 and
// a note saying why sockets in the environment are not this process's.
func parseListenEnv(getenv func(string) string, pid int) (n int, names []string, note string, err error) {
	pidEnv, fdsEnv, namesEnv := getenv("LISTEN_PID"), getenv("LISTEN_FDS"), getenv("LISTEN_FDNAMES")
	switch {
	case pidEnv == "" && fdsEnv == "":
		return 0, nil, "", nil
	case pidEnv == "":
		return 0, nil, "", fmt.Errorf("systemd: LISTEN_FDS=%q is set but LISTEN_PID is not: whose sockets are they?", fdsEnv)
	case fdsEnv == "":
		return 0, nil, "", fmt.Errorf("systemd: LISTEN_PID=%q is set but LISTEN_FDS is not", pidEnv)
	}
	p, err := strconv.Atoi(pidEnv)
	if err != nil || p <= 0 {
		return 0, nil, "", fmt.Errorf("systemd: LISTEN_PID=%q is not a process id", pidEnv)
	}
	n, err = strconv.Atoi(fdsEnv)
	if err != nil || n < 0 {
		return 0, nil, "", fmt.Errorf("systemd: LISTEN_FDS=%q is not a number of file descriptors", fdsEnv)
	}
	if p != pid {
		return 0, nil, fmt.Sprintf("LISTEN_PID=%d is not this process (%d): the %d socket(s) passed were for the process that was started, which must exec this program", p, pid, n), nil
	}
	if n == 0 {
		return 0, nil, "", nil
	}
	if namesEnv == "" {
		names = make([]string, n)
		for i := range names {
			names[i] = "unknown"
		}
		return n, names, "", nil
	}
	names = strings.Split(namesEnv, ":")
	if len(names) != n {
		return 0, nil, "", fmt.Errorf("systemd: LISTEN_FDNAMES=%q names %d socket(s), but LISTEN_FDS=%d", namesEnv, len(names), n)
	}
	return n, names, "", nil
}

// inherit makes Listeners of the sockets fds, named names, and marks them
// close-on-exec.
func inherit(fds []int, names []string) (*Listeners, error) {
	l := &Listeners{}
	for i, fd := range fds {
		if err := closeOnExec(fd); err != nil {
			return nil, fmt.Errorf("systemd: socket %q: file descriptor %d passed by LISTEN_FDS: %w", names[i], fd, err)
		}
	}
	for i, fd := range fds {
		l.socks = append(l.socks, &inherited{name: names[i], fd: fd, file: os.NewFile(uintptr(fd), "systemd:"+names[i])})
	}
	return l, nil
}

// Activated reports whether the process was socket-activated: whether it
// holds sockets passed by systemd (taken or not).
func (l *Listeners) Activated() bool { return len(l.socks) > 0 }

// Names returns the names of the sockets passed, in the order of their file
// descriptors, taken or not; nil when the process was not activated.
func (l *Listeners) Names() []string {
	var names []string
	for _, s := range l.socks {
		names = append(names, s.name)
	}
	return names
}

// Listen returns a listener for the socket named name when the process was
// socket-activated, and otherwise binds addr itself, as net.Listen(network,
// addr) does: the same program runs under systemd and by hand. When several
// sockets have the name, each call takes the next one; name "" takes the next
// socket whatever its name.
//
// When the process was activated, Listen returns an error, and binds nothing,
// if no socket of that name is left, or the socket is not listening (a socket
// unit with Accept=yes passes connections), or its network is not network
// ("tcp", "tcp4" and "tcp6" all match a TCP socket, "unix" a stream unix
// socket). The caller owns the listener; closing it closes this process's
// descriptor, and the socket stays open in systemd.
//
// The listener of an inherited socket is not a *net.TCPListener: it has only
// the methods of net.Listener, so that no code can shut the socket down (a
// shutdown(2) acts on the socket, for systemd too) rather than just close its
// descriptor.
func (l *Listeners) Listen(name, network, addr string) (net.Listener, error) {
	if !l.Activated() {
		ln, err := net.Listen(network, addr)
		if err != nil && l.note != "" {
			err = fmt.Errorf("%w (socket activation not used: %s)", err, l.note)
		}
		return ln, err
	}
	return l.take(name, network)
}

// Inherited returns a listener for the socket named name, as [Listeners.Listen]
// does, when the process was socket-activated; and nil with a nil error when it
// was not, so that the caller binds its address itself. It suits the options
// that give a server a listener and leave the bind to the server's Start when
// given nil (httpcomponent.WithListener, grpccomponent.WithListener): a port in
// use then remains an error of Start.
func (l *Listeners) Inherited(name string) (net.Listener, error) {
	if !l.Activated() {
		return nil, nil
	}
	return l.take(name, "")
}

// take returns a listener on the next socket named name, checking its
// network unless network is empty.
func (l *Listeners) take(name, network string) (net.Listener, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("systemd: socket %q: Listeners closed", name)
	}
	var s *inherited
	for _, c := range l.socks {
		if c.file != nil && (name == "" || c.name == name) {
			s = c
			break
		}
	}
	if s == nil {
		return nil, fmt.Errorf("systemd: no socket named %q left among those passed by socket activation (%s)", name, strings.Join(l.Names(), ", "))
	}
	if err := checkListening(s.fd); err != nil {
		return nil, fmt.Errorf("systemd: socket %q (file descriptor %d): %w", s.name, s.fd, err)
	}
	ln, err := net.FileListener(s.file)
	if err != nil {
		return nil, fmt.Errorf("systemd: socket %q (file descriptor %d): %w", s.name, s.fd, err)
	}
	if have := ln.Addr().Network(); network != "" && have != strings.TrimRight(network, "46") {
		_ = ln.Close()
		return nil, fmt.Errorf("systemd: socket %q (file descriptor %d) is a %s socket (%s), not %s", s.name, s.fd, have, ln.Addr(), network)
	}
	// ln has a descriptor of its own (a duplicate): release this one.
	_ = s.file.Close()
	s.file = nil
	return sharedListener{ln}, nil
}

// Close closes the sockets that were not taken (this process's descriptors
// only: systemd keeps its own). Listen and Inherited fail after it. It returns
// the errors of the closes, joined; a second Close returns nil.
func (l *Listeners) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	for _, s := range l.socks {
		if s.file != nil {
			errs = append(errs, s.file.Close())
			s.file = nil
		}
	}
	return errors.Join(errs...)
}

// sharedListener is a listener on a socket that systemd shares with this
// process. It hides the concrete listener type, whose methods would give
// access to the socket's descriptor: code that shuts a *net.TCPListener down
// to drain its queue (httpcomponent does) would stop the socket listening for
// systemd and the next process too.
type sharedListener struct{ net.Listener }
