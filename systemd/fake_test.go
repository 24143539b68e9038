package systemd

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitBound bounds every wait of the tests for something that must happen:
// generous, for a shared machine running -race binaries.
const waitBound = 15 * time.Second

// fakeSystemd is a unix datagram socket standing in for systemd's notify
// socket: it records every datagram it receives, with the time.
type fakeSystemd struct {
	addr string // the value of NOTIFY_SOCKET
	conn *net.UnixConn
	done chan struct{}

	mu     sync.Mutex
	msgs   []message
	signal chan struct{} // a message arrived (capacity 1)
	next   int           // the index of the next message take returns
}

// message is one datagram: its assignments, one a line.
type message struct {
	at    time.Time
	lines []string
}

func (m message) String() string { return strings.Join(m.lines, `\n`) }

// has reports whether the message has the assignment line.
func (m message) has(line string) bool { return slices.Contains(m.lines, line) }

// value returns the value assigned to key, if any.
func (m message) value(key string) (string, bool) {
	for _, l := range m.lines {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// newFakeSystemd listens on a unix datagram socket: a path in a temporary
// directory, or a name in the abstract namespace.
func newFakeSystemd(t testing.TB, abstract bool) *fakeSystemd {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	if abstract {
		name = fmt.Sprintf("@graceful-systemd-test-%d-%x", os.Getpid(), rand.Uint64())
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSystemd{addr: name, conn: conn, done: make(chan struct{}), signal: make(chan struct{}, 1)}
	go f.read()
	t.Cleanup(func() {
		_ = conn.Close()
		<-f.done
	})
	return f
}

func (f *fakeSystemd) read() {
	defer close(f.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := f.conn.Read(buf)
		if err != nil {
			return
		}
		m := message{at: time.Now(), lines: strings.Split(string(buf[:n]), "\n")}
		f.mu.Lock()
		f.msgs = append(f.msgs, m)
		f.mu.Unlock()
		select {
		case f.signal <- struct{}{}:
		default:
		}
	}
}

// take returns the next message, waiting for it up to waitBound.
func (f *fakeSystemd) take(t *testing.T) message {
	t.Helper()
	timeout := time.NewTimer(waitBound)
	defer timeout.Stop()
	for {
		f.mu.Lock()
		if f.next < len(f.msgs) {
			m := f.msgs[f.next]
			f.next++
			f.mu.Unlock()
			return m
		}
		f.mu.Unlock()
		select {
		case <-f.signal:
		case <-timeout.C:
			t.Fatalf("no message from the notifier within %v; received so far:\n%s", waitBound, f.dump())
		}
	}
}

// until returns the next messages up to and including the first for which
// match is true.
func (f *fakeSystemd) until(t *testing.T, match func(message) bool) []message {
	t.Helper()
	var out []message
	for {
		m := f.take(t)
		out = append(out, m)
		if match(m) {
			return out
		}
	}
}

func (f *fakeSystemd) dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, m := range f.msgs {
		fmt.Fprintf(&b, "  %s\n", m)
	}
	return b.String()
}

// with matches a message that has the assignment line.
func with(line string) func(message) bool {
	return func(m message) bool { return m.has(line) }
}

// withPrefix matches a message with an assignment that begins with prefix.
func withPrefix(prefix string) func(message) bool {
	return func(m message) bool {
		return slices.ContainsFunc(m.lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
	}
}

// env is a getenv for WithGetenv that sees only the pairs key, value, ...
func env(kv ...string) func(string) string {
	m := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// withTick sets the watchdog's test seam.
func withTick(fn func(pinged bool)) Option {
	return func(c *config) { c.tick = fn }
}

// service is a test component: Start runs until Stop (or its context ends);
// Stop returns at once, or after hold is closed, or when its context is done.
type service struct {
	hold      chan struct{} // if set, Stop blocks until it is closed, whatever its context
	untilDone bool          // Stop blocks until its context is done
	stopped   chan struct{}
	once      sync.Once
}

func newService() *service { return &service{stopped: make(chan struct{})} }

func (s *service) Start(ctx context.Context) error {
	select {
	case <-s.stopped:
	case <-ctx.Done():
	}
	return nil
}

func (s *service) Stop(ctx context.Context) error {
	if s.hold != nil {
		<-s.hold
	}
	if s.untilDone {
		<-ctx.Done()
	}
	s.once.Do(func() { close(s.stopped) })
	return nil
}

// run runs g in a goroutine and returns a channel that receives what Run
// returned.
func run(g interface{ Run(context.Context) error }, ctx context.Context) <-chan error {
	res := make(chan error, 1)
	go func() { res <- g.Run(ctx) }()
	return res
}

// wait returns what Run returned, failing the test if it takes longer than
// waitBound.
func wait(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(waitBound):
		t.Fatalf("Run did not return within %v", waitBound)
		return nil
	}
}
