package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// A child is one benchmark application running as a child process on a
// loopback port. Every child must be reaped with kill (which is harmless
// after the child has exited).
type child struct {
	addr   string
	cmd    *exec.Cmd
	ready  chan struct{} // closed when the child printed "ready"
	exited chan struct{} // closed when the child has been reaped
	exitAt time.Time     // when the child was reaped; read after exited
	state  *os.ProcessState
	stderr *lockedBuffer
}

// lockedBuffer collects a child's standard error.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// readyTimeout bounds how long a child may take to print "ready".
const readyTimeout = 20 * time.Second

// startChild runs bin with args and -addr on a free loopback port, and waits
// until it is ready. It tries a second port if the first start fails (the
// port may have been taken in between).
func startChild(bin string, args ...string) (*child, error) {
	var err error
	for range 2 {
		var c *child
		if c, err = startOnce(bin, args); err == nil {
			return c, nil
		}
	}
	return nil, err
}

func startOnce(bin string, args []string) (*child, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c := &child{
		addr:   addr,
		cmd:    exec.Command(bin, append([]string{"-addr", addr}, args...)...),
		ready:  make(chan struct{}),
		exited: make(chan struct{}),
		stderr: &lockedBuffer{},
	}
	c.cmd.Stdout = w // an *os.File: no copying goroutine, Wait returns at exit
	c.cmd.Stderr = c.stderr
	err = c.cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	go func() {
		defer r.Close()
		s := bufio.NewScanner(r)
		seen := false
		for s.Scan() {
			if !seen && s.Text() == "ready" {
				seen = true
				close(c.ready)
			}
		}
	}()
	go func() {
		_ = c.cmd.Wait()
		c.exitAt = time.Now()
		c.state = c.cmd.ProcessState
		close(c.exited)
	}()
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-c.ready:
		return c, nil
	case <-c.exited:
		return nil, fmt.Errorf("%s exited before ready (%v): %s", bin, c.state, c.stderr.String())
	case <-t.C:
		c.kill()
		return nil, fmt.Errorf("%s not ready within %v: %s", bin, readyTimeout, c.stderr.String())
	}
}

// term sends SIGTERM and returns when it was sent.
func (c *child) term() (time.Time, error) {
	at := time.Now()
	return at, c.cmd.Process.Signal(syscall.SIGTERM)
}

// waitExit waits until the child has exited, or limit has passed; then it
// kills the child. It reports whether the child exited by itself.
func (c *child) waitExit(limit time.Duration) bool {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-c.exited:
		return true
	case <-t.C:
		c.kill()
		return false
	}
}

// kill kills the child if it still runs, and waits until it has been
// reaped.
func (c *child) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// exitCode describes how the child ended.
func (c *child) exitCode() string {
	if c.state == nil {
		return "running"
	}
	var st syscall.WaitStatus
	if ws, ok := c.state.Sys().(syscall.WaitStatus); ok {
		st = ws
	}
	if st.Signaled() {
		return "killed by " + st.Signal().String()
	}
	return "exit " + strconv.Itoa(c.state.ExitCode())
}

// errNotExited is returned when a child did not exit in time.
var errNotExited = errors.New("did not exit")
