package systemd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
)

// TestListenEnv checks the reading of LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES: what is this process's, what is not, and a clear error for
// what is malformed.
func TestListenEnv(t *testing.T) {
	const self = 4242
	for _, tc := range []struct {
		name  string
		env   []string
		n     int
		names []string
		note  string // in the note, when the sockets are another process's
		err   string // in the error; "" for none
	}{
		{"Unset", nil, 0, nil, "", ""},
		{"One", []string{"LISTEN_PID", "4242", "LISTEN_FDS", "1"}, 1, []string{"unknown"}, "", ""},
		{"Named", []string{"LISTEN_PID", "4242", "LISTEN_FDS", "2", "LISTEN_FDNAMES", "grpc:http"}, 2, []string{"grpc", "http"}, "", ""},
		{"SameName", []string{"LISTEN_PID", "4242", "LISTEN_FDS", "2", "LISTEN_FDNAMES", "web.socket:web.socket"}, 2, []string{"web.socket", "web.socket"}, "", ""},
		{"NoSockets", []string{"LISTEN_PID", "4242", "LISTEN_FDS", "0"}, 0, nil, "", ""},
		{"OtherProcess", []string{"LISTEN_PID", "99", "LISTEN_FDS", "2", "LISTEN_FDNAMES", "a:b"}, 0, nil, "LISTEN_PID=99 is not this process (4242)", ""},
		{"BadPID", []string{"LISTEN_PID", "self", "LISTEN_FDS", "1"}, 0, nil, "", `LISTEN_PID="self" is not a process id`},
		{"ZeroPID", []string{"LISTEN_PID", "0", "LISTEN_FDS", "1"}, 0, nil, "", `LISTEN_PID="0" is not a process id`},
		{"NegativePID", []string{"LISTEN_PID", "-4242", "LISTEN_FDS", "1"}, 0, nil, "", `LISTEN_PID="-4242" is not a process id`},
		{"BadFDs", []string{"LISTEN_PID", "4242", "LISTEN_FDS", "two"}, 0, nil, "", `LISTEN_FDS="two" is not a number of file descriptors`},
		{"NegativeFDs", []string{"LISTEN_PID", "4242", "LISTEN_FDS", "-1"}, 0, nil, "", `LISTEN_FDS="-1" is not a number`},
		{"FDsWithoutPID", []string{"LISTEN_FDS", "1"}, 0, nil, "", `LISTEN_FDS="1" is set but LISTEN_PID is not`},
		{"PIDWithoutFDs", []string{"LISTEN_PID", "4242"}, 0, nil, "", `LISTEN_PID="4242" is set but LISTEN_FDS is not`},
		{"TooFewNames", []string{"LISTEN_PID", "4242", "LISTEN_FDS", "2", "LISTEN_FDNAMES", "http"}, 0, nil, "", `LISTEN_FDNAMES="http" names 1 socket(s), but LISTEN_FDS=2`},
		{"TooManyNames", []string{"LISTEN_PID", "4242", "LISTEN_FDS", "1", "LISTEN_FDNAMES", "http:grpc"}, 0, nil, "", `LISTEN_FDNAMES="http:grpc" names 2 socket(s), but LISTEN_FDS=1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, names, note, err := parseListenEnv(env(tc.env...), self)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error: have %v, want one that says %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if n != tc.n || !slices.Equal(names, tc.names) {
				t.Errorf("have %d sockets %q, want %d %q", n, names, tc.n, tc.names)
			}
			if (tc.note == "") != (note == "") || !strings.Contains(note, tc.note) {
				t.Errorf("note: have %q, want one that says %q", note, tc.note)
			}
		})
	}
}

// TestNotActivated checks that without activation Listen binds the address
// and Inherited returns nil; and that when LISTEN_PID names another process
// the sockets are not used, and a failed bind says why.
func TestNotActivated(t *testing.T) {
	ls, err := Activation(WithGetenv(env()))
	if err != nil {
		t.Fatal(err)
	}
	if ls.Activated() || ls.Names() != nil {
		t.Errorf("Activated() = %v, Names() = %q; want false, nil", ls.Activated(), ls.Names())
	}
	ln, err := ls.Listen("http", "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, ok := ln.(*net.TCPListener); !ok {
		t.Errorf("Listen without activation returned a %T, want the *net.TCPListener of net.Listen", ln)
	}
	if in, err := ls.Inherited("http"); in != nil || err != nil {
		t.Errorf("Inherited without activation: have %v, %v; want nil, nil", in, err)
	}

	other := env("LISTEN_PID", strconv.Itoa(os.Getpid()+1), "LISTEN_FDS", "2")
	ls, err = Activation(WithGetenv(other))
	if err != nil {
		t.Fatal(err)
	}
	if ls.Activated() {
		t.Errorf("activated by another process's LISTEN_PID")
	}
	_, err = ls.Listen("http", "tcp", ln.Addr().String()) // in use
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "is not this process") {
		t.Errorf("bind of a port in use with another process's LISTEN_PID: have %v, want the bind error and why activation was not used", err)
	}
	if _, err := Activation(WithGetenv(env("LISTEN_PID", "x", "LISTEN_FDS", "1"))); err == nil {
		t.Errorf("Activation with LISTEN_PID=x: no error")
	}
}

// inheritable returns a duplicate of the socket of c, as systemd passes it:
// a descriptor that is not close-on-exec, owned by the caller.
func inheritable(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	var derr error
	err = rc.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }) // dup(2): no FD_CLOEXEC
	if err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	if cloexec(t, fd) {
		t.Fatalf("dup(2) made a close-on-exec descriptor")
	}
	return fd
}

func cloexec(t *testing.T, fd int) bool {
	t.Helper()
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	if errno != 0 {
		t.Fatalf("fcntl(%d, F_GETFD): %v", fd, errno)
	}
	return flags&syscall.FD_CLOEXEC != 0
}

func listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestInherited passes sockets to Listeners as systemd would (descriptors
// not close-on-exec) and checks: every one becomes close-on-exec; Listen
// takes them by name, each once, in order when names repeat; a wrong network,
// an unknown name, a socket that is not listening are clear errors; Close
// closes those not taken.
func TestInherited(t *testing.T) {
	api := listen(t, "tcp", "127.0.0.1:0")
	web1 := listen(t, "tcp", "127.0.0.1:0")
	web2 := listen(t, "tcp", "127.0.0.1:0")
	admin := listen(t, "unix", filepath.Join(t.TempDir(), "admin.sock"))
	spare := listen(t, "tcp", "127.0.0.1:0")
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	socks := []struct {
		name string
		c    syscall.Conn
	}{
		{"api", api.(*net.TCPListener)}, {"web", web1.(*net.TCPListener)}, {"web", web2.(*net.TCPListener)},
		{"admin", admin.(*net.UnixListener)}, {"dns", udp.(*net.UDPConn)}, {"spare", spare.(*net.TCPListener)},
	}
	var fds []int
	var names []string
	for _, s := range socks {
		fds = append(fds, inheritable(t, s.c))
		names = append(names, s.name)
	}
	ls, err := inherit(fds, names)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	for i, fd := range fds {
		if !cloexec(t, fd) {
			t.Errorf("socket %q (fd %d) is not close-on-exec", names[i], fd)
		}
	}
	if !ls.Activated() || !slices.Equal(ls.Names(), names) {
		t.Errorf("Activated() = %v, Names() = %q; want true, %q", ls.Activated(), ls.Names(), names)
	}

	take := func(name, network string, want net.Listener) {
		t.Helper()
		ln, err := ls.Listen(name, network, "127.0.0.1:1") // the address is not used
		if err != nil {
			t.Fatalf("Listen(%q, %q): %v", name, network, err)
		}
		defer ln.Close()
		if ln.Addr().String() != want.Addr().String() {
			t.Errorf("Listen(%q) took the socket on %v, want %v", name, ln.Addr(), want.Addr())
		}
		if _, ok := ln.(sharedListener); !ok {
			t.Errorf("Listen(%q) returned a %T, want a sharedListener", name, ln)
		}
		// It serves: a connection to the socket is accepted through it.
		c, err := net.Dial(want.Addr().Network(), want.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a, err := ln.Accept()
		if err != nil {
			t.Fatalf("Accept on %q: %v", name, err)
		}
		a.Close()
	}
	take("web", "tcp", web1)
	take("api", "tcp4", api)
	take("web", "tcp", web2)

	for _, tc := range []struct{ name, network, err string }{
		{"web", "tcp", `no socket named "web" left among those passed by socket activation (api, web, web, admin, dns, spare)`},
		{"metrics", "tcp", `no socket named "metrics" left`},
		{"admin", "tcp", `socket "admin" (file descriptor ` + strconv.Itoa(fds[3]) + `) is a unix socket (` + admin.Addr().String() + `), not tcp`},
		{"dns", "udp", "not a listening socket"},
	} {
		if _, err := ls.Listen(tc.name, tc.network, "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Listen(%q, %q): have %v, want an error that says %q", tc.name, tc.network, err, tc.err)
		}
	}
	// A wrong network leaves the socket for a Listen with the right one.
	in, err := ls.Inherited("admin")
	if err != nil || in.Addr().String() != admin.Addr().String() {
		t.Fatalf("Inherited(admin): %v, %v", in, err)
	}
	in.Close()

	// Close closes what was not taken ("dns" and "spare"), only in this process.
	if err := ls.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, fd := range fds[4:] {
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); errno != syscall.EBADF {
			t.Errorf("fd %d still open after Close (%v)", fd, errno)
		}
	}
	if _, err := ls.Listen("spare", "tcp", ""); err == nil || !strings.Contains(err.Error(), "Listeners closed") {
		t.Errorf("Listen after Close: have %v, want an error", err)
	}
	if c, err := net.Dial("tcp", spare.Addr().String()); err != nil {
		t.Errorf("the socket closed by Close is no longer listening in its owner: %v", err)
	} else {
		c.Close()
	}
}

// TestInheritedNotOpen checks that a descriptor in LISTEN_FDS that is not
// open is an error of Activation.
func TestInheritedNotOpen(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "fd")
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	f.Close() // now fd is not open (nothing else opens files in this test)
	if _, err := inherit([]int{fd}, []string{"http"}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf(`socket "http": file descriptor %d passed by LISTEN_FDS: bad file descriptor`, fd)) {
		t.Errorf("have %v, want an error naming the descriptor", err)
	}
}

// TestSharedSocketSurvivesStop hands a socket over from one server to the
// next as socket activation does across a restart: an "activator" holds the
// listening socket; a Group serves on an inherited copy with httpcomponent,
// and stops; a client connects and sends its request while no process
// serves; the next Group, on a new copy, answers it. The socket must still be
// listening after the first server stopped: the server closes its own
// descriptor and must not shut the shared socket down.
func TestSharedSocketSurvivesStop(t *testing.T) {
	activator := listen(t, "tcp", "127.0.0.1:0").(*net.TCPListener)
	addr := activator.Addr().String()
	serve := func(round int) (stop func()) {
		ls, err := inherit([]int{inheritable(t, activator)}, []string{"http"})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := ls.Listen("http", "tcp", "")
		if err != nil {
			t.Fatal(err)
		}
		g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithLogger(nil), lifecycle.WithDrainDelay(0))
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "round %d", round) })
		web := httpcomponent.New("", h, httpcomponent.WithListener(ln))
		web.HTTP().ReadHeaderTimeout = waitBound
		g.Add("http", web)
		ctx, cancel := context.WithCancel(context.Background())
		res := run(g, ctx)
		<-g.Ready()
		return func() {
			cancel()
			if err := wait(t, res); err != nil {
				t.Errorf("round %d: Run: %v", round, err)
			}
			ls.Close()
		}
	}
	get := func(c net.Conn) string {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(waitBound))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	stop := serve(1)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if body := get(c); body != "round 1" {
		t.Errorf("first server answered %q", body)
	}
	c.Close()
	stop()

	// No server now: the connection waits in the socket's queue.
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("the socket no longer listens once the first server stopped: %v", err)
	}
	defer c.Close()
	stop = serve(2)
	defer stop()
	if body := get(c); body != "round 2" {
		t.Errorf("the request sent between the two servers was answered %q, want %q", body, "round 2")
	}
}

// findSocketActivate returns the path of systemd-socket-activate (Debian
// package systemd).
func findSocketActivate(t *testing.T) string {
	if p, err := exec.LookPath("systemd-socket-activate"); err == nil {
		return p
	}
	const why = "systemd-socket-activate is not on PATH: the activation test needs it (apt-get install systemd)"
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
	return ""
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago
// (systemd-socket-activate does not take port 0).
func freePort(t *testing.T) int {
	t.Helper()
	ln := listen(t, "tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

var listeningRE = regexp.MustCompile(`Listening on 127\.0\.0\.1:(\d+) as (\d+)\.`)

// TestSocketActivate runs this test binary as a socket-activated service
// under the real systemd-socket-activate, with three sockets named, in this
// order, "grpc", "http" and "spare". The first connection, to "http", makes
// the activator exec the service, which must serve it, and later the one to
// "grpc", each on the socket of that name; "spare", passed but not taken, must
// be close-on-exec. The service notifies a stand-in for systemd (READY=1) and
// stops cleanly on SIGTERM (STOPPING=1, exit status 0).
func TestSocketActivate(t *testing.T) {
	activate := findSocketActivate(t)
	sd := newFakeSystemd(t, true)
	ports := map[string]int{"grpc": freePort(t), "http": freePort(t), "spare": freePort(t)}
	cmd := exec.Command(activate,
		"-l", fmt.Sprintf("127.0.0.1:%d", ports["grpc"]),
		"-l", fmt.Sprintf("127.0.0.1:%d", ports["http"]),
		"-l", fmt.Sprintf("127.0.0.1:%d", ports["spare"]),
		"--fdname=grpc:http:spare",
		"-E", childEnv+"=1",
		"-E", childServeEnv+"=http,grpc",
		"-E", "NOTIFY_SOCKET="+sd.addr,
		os.Args[0], "-test.run=^$")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			select {
			case lines <- s.Text():
			default:
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	// The activator says where it listens, then waits for a connection.
	var log []string
	timeout := time.After(waitBound)
	for fd := range 3 {
		select {
		case l := <-lines:
			log = append(log, l)
			m := listeningRE.FindStringSubmatch(l)
			if m == nil || m[2] != strconv.Itoa(3+fd) {
				t.Fatalf("systemd-socket-activate: unexpected %q", l)
			}
		case err := <-exited:
			t.Fatalf("systemd-socket-activate exited: %v\n%s", err, strings.Join(log, "\n"))
		case <-timeout:
			t.Fatalf("systemd-socket-activate did not listen within %v", waitBound)
		}
	}

	client := &http.Client{Timeout: waitBound, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, name := range []string{"http", "grpc"} {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", ports[name]))
		if err != nil {
			t.Fatalf("GET on the %q socket: %v", name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := name + " untaken-cloexec=true"; string(b) != want {
			t.Errorf("GET on the %q socket (port %d): have %q, want %q", name, ports[name], b, want)
		}
	}
	sd.until(t, with("READY=1"))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sd.until(t, with("STOPPING=1"))
	sd.until(t, with("STATUS=stopped (lifecycle: received signal terminated)"))
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the service exited with %v, want status 0", err)
		}
	case <-time.After(waitBound):
		t.Fatalf("the service did not exit within %v of SIGTERM", waitBound)
	}
}
