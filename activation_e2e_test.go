// End-to-end tests of socket activation and the notify protocol with the
// example server (examples/server, package systemd): a single instance
// restarted under load behind a socket that outlives it, and the real
// systemd-socket-activate. They reuse the helpers of lifecycle_test.go
// (buildExamples, proc, lineBuf, freePorts).
package graceful_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/graceful-go/graceful/lifecycle"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The restart test's load, bounded in count and in time, and the restarts.
const (
	restarts       = 3
	restartClients = 8                    // half on keep-alive connections, half on a new connection per request
	restartMaxReqs = 100_000              // requests of one run, at most
	restartMaxTime = 3 * time.Minute      // how long the load of one run may last, at most
	restartOKEach  = 150                  // requests each process serves before it is restarted
	retryPause     = 5 * time.Millisecond // a client's pause after a failed request
)

// TestSocketActivation builds the example server once and runs it socket
// activated: restarted under load behind a socket held by the test, and
// under the real systemd-socket-activate.
func TestSocketActivation(t *testing.T) {
	bins := buildExamples(t)
	t.Run("ZeroDowntimeRestart", func(t *testing.T) { testZeroDowntimeRestart(t, bins.server) })
	t.Run("SystemdSocketActivate", func(t *testing.T) { testSystemdSocketActivate(t, bins.server) })
}

// testZeroDowntimeRestart restarts a single instance of the example server 3
// times under constant load (8 clients: 4 keep-alive, 4 opening a new
// connection per request; GET /work of 5 ms), each restart a SIGTERM, the
// wait for the exit, and the start of the next process.
//
// With socket activation the test is the activator: it holds the listening
// socket, as systemd does, and passes it to each process as file descriptor 3
// (LISTEN_FDS=1, LISTEN_FDNAMES=http, LISTEN_PID the process's own pid).
// While no process runs, connections wait in the socket's queue: no request
// may fail, and in each restart at least one request must have waited through
// it (connected before the old process exited, accepted by the next one),
// which shows that the load did reach the gap.
//
// Without socket activation each process binds the port itself: the
// connections refused between two processes are counted and logged, and there
// must be some (the same load, the same gap).
func testZeroDowntimeRestart(t *testing.T, bin string) {
	with := restartUnderLoad(t, bin, true)
	without := restartUnderLoad(t, bin, false)
	t.Logf("%d restarts of one instance under load: with socket activation %d failed of %d requests; binding its own port %d failed of %d requests",
		restarts, with.failed(), len(with.results), without.failed(), len(without.results))

	if n := with.failed(); n > 0 {
		t.Errorf("socket activation: %d of %d requests failed across %d restarts; want 0", n, len(with.results), restarts)
		for _, r := range with.failures(20) {
			t.Errorf("  %s", r)
		}
	}
	for i, s := range with.stats() {
		if s.waitedAcross == 0 {
			t.Errorf("socket activation, restart %d: no request waited through the restart (connected before the old process exited, accepted by the next one): the load did not reach the gap", i+1)
		}
	}
	if without.failed() == 0 {
		t.Errorf("binding its own port: no request failed in %d restarts; the load did not reach the gaps, so the run with socket activation proves nothing", restarts)
	}
}

// reqResult is one request of the restart load.
type reqResult struct {
	start, end time.Time
	connected  time.Time // when its new connection was established; zero on a reused one
	local      string    // the client's address of its connection
	keepAlive  bool      // a keep-alive client's
	err        string    // "" when it was answered 200
}

func (r reqResult) String() string {
	conn := "no connection"
	switch {
	case r.local != "" && r.connected.IsZero():
		conn = "reused connection from " + r.local
	case r.local != "":
		conn = "new connection from " + r.local
	}
	return fmt.Sprintf("%s %s (keep-alive client: %v), %v: %s",
		r.start.UTC().Format("15:04:05.000000"), conn, r.keepAlive,
		r.end.Sub(r.start).Round(time.Microsecond), r.err)
}

func cmpOr(s, or string) string {
	if s == "" {
		return or
	}
	return s
}

// restartLoad is restartClients clients that GET one URL, one request after
// the other, until stopped, restartMaxReqs requests or restartMaxTime.
type restartLoad struct {
	ok   atomic.Int64
	quit chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu      sync.Mutex
	results []reqResult
}

func startRestartLoad(t *testing.T, url string) *restartLoad {
	l := &restartLoad{quit: make(chan struct{})}
	t.Cleanup(l.stop)
	end := time.Now().Add(restartMaxTime)
	var sent atomic.Int64
	for i := range restartClients {
		keepAlive := i%2 == 0
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableKeepAlives: !keepAlive}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			for sent.Add(1) <= restartMaxReqs && time.Now().Before(end) {
				select {
				case <-l.quit:
					return
				default:
				}
				r := get(c, url)
				r.keepAlive = keepAlive
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
				if r.err == "" {
					l.ok.Add(1)
					continue
				}
				// A client that failed tries again soon, not at once: the
				// count of failures is then about the time clients are
				// refused, not how fast a loop spins.
				select {
				case <-l.quit:
					return
				case <-time.After(retryPause):
				}
			}
		}()
	}
	return l
}

// get sends one GET and says how it went.
func get(c *http.Client, url string) reqResult {
	var r reqResult
	trace := &httptrace.ClientTrace{
		ConnectDone: func(_, _ string, err error) {
			if err == nil {
				r.connected = time.Now()
			}
		},
		GotConn: func(i httptrace.GotConnInfo) {
			r.local = i.Conn.LocalAddr().String()
			if i.Reused {
				r.connected = time.Time{}
			}
		},
	}
	r.start = time.Now()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
	if err != nil {
		panic(err)
	}
	resp, err := c.Do(req)
	if err == nil {
		var body []byte
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, strings.Join(strings.Fields(string(body)), " "))
		}
	}
	r.end = time.Now()
	if err != nil {
		r.err = err.Error()
	}
	return r
}

// stop ends the clients, letting each finish its request, and waits for them.
func (l *restartLoad) stop() {
	l.once.Do(func() { close(l.quit) })
	l.wg.Wait()
}

// restartMark is one restart: when the old process was told to stop, when
// it exited, and when the next one was started and was ready.
type restartMark struct {
	sigterm, exited, spawned, ready time.Time
	next                            *proc
}

// restartRun is what one run of restartUnderLoad saw.
type restartRun struct {
	activated bool
	marks     []restartMark
	end       time.Time // when the load was told to stop
	results   []reqResult
}

func (r restartRun) failed() int {
	n := 0
	for _, x := range r.results {
		if x.err != "" {
			n++
		}
	}
	return n
}

// failures returns the first n failed requests.
func (r restartRun) failures(n int) []reqResult {
	var out []reqResult
	for _, x := range r.results {
		if x.err != "" && len(out) < n {
			out = append(out, x)
		}
	}
	return out
}

// restartStats is what the clients saw of one restart: the requests sent
// from its SIGTERM to the next restart's (or the end of the load).
type restartStats struct {
	sent, failed int
	longest      time.Duration // the longest request sent in the window
	waitedAcross int           // answered on a connection made before the old process exited, accepted by the next
	stop, gap    time.Duration // SIGTERM to exit; exit to the next process ready (nobody accepting)
	firstFail    time.Time
	lastFail     time.Time
}

func (r restartRun) stats() []restartStats {
	var out []restartStats
	for i, m := range r.marks {
		until := r.end
		if i+1 < len(r.marks) {
			until = r.marks[i+1].sigterm
		}
		accepted := m.next.acceptedConns()
		s := restartStats{stop: m.exited.Sub(m.sigterm), gap: m.ready.Sub(m.exited)}
		for _, x := range r.results {
			if x.start.Before(m.sigterm) || !x.start.Before(until) {
				continue
			}
			s.sent++
			s.longest = max(s.longest, x.end.Sub(x.start))
			if x.err != "" {
				s.failed++
				if s.firstFail.IsZero() {
					s.firstFail = x.end
				}
				s.lastFail = x.end
			}
			if x.err == "" && !x.connected.IsZero() && x.connected.Before(m.exited) && accepted[x.local] {
				s.waitedAcross++
			}
		}
		out = append(out, s)
	}
	return out
}

// restartUnderLoad starts the example server, puts the load on it, restarts
// it `restarts` times, each once it has served restartOKEach requests, and
// returns what the clients saw. With activated, the test holds the listening
// socket and passes it to every process; without, each process binds the
// same port itself.
func restartUnderLoad(t *testing.T, bin string, activated bool) restartRun {
	mode := "binding its own port"
	args := []string{"-grpc-addr", "127.0.0.1:0", "-delay", "5ms", "-drain-delay", "0", "-shutdown-timeout", "10s",
		"-log-format", "json", "-log-level", "debug"}
	var start func(n int) *proc
	var addr string
	if activated {
		mode = "socket activation"
		// The activator's socket: the test never accepts on it.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		addr = ln.Addr().String()
		start = func(n int) *proc {
			return startActivated(t, fmt.Sprintf("server %d", n), f, "http", bin, slices.Concat(args, []string{"-http-addr", "127.0.0.1:0"})...)
		}
	} else {
		addr = "127.0.0.1:" + freePorts(t, 1)[0]
		start = func(n int) *proc {
			return startProc(t, fmt.Sprintf("server %d", n), bin, slices.Concat(args, []string{"-http-addr", addr})...)
		}
	}
	ready := func(p *proc) time.Time {
		t.Helper()
		httpAddr, _ := p.addrs(t)
		at := time.Now()
		if httpAddr != addr {
			t.Fatalf("%s: %s listens on %s, want %s", mode, p.name, httpAddr, addr)
		}
		return at
	}
	served := func(p *proc, l *restartLoad, n int64) {
		t.Helper()
		if !p.poll(t, func() bool { return l.ok.Load() >= n }) {
			t.Fatalf("%s: %d requests served, want %d within %v", mode, l.ok.Load(), n, startBound)
		}
	}

	run := restartRun{activated: activated}
	p := start(0)
	ready(p)
	load := startRestartLoad(t, "http://"+addr+"/work")
	served(p, load, restartOKEach)
	for i := 1; i <= restarts; i++ {
		var m restartMark
		m.sigterm = p.signal(t, syscall.SIGTERM)
		code, exited := p.wait(t, exitBound)
		m.exited = exited
		if code != lifecycle.ExitOK {
			t.Errorf("%s: %s exited with status %d, want %d", mode, p.name, code, lifecycle.ExitOK)
		}
		m.spawned = time.Now()
		p = start(i)
		m.ready = ready(p)
		m.next = p
		run.marks = append(run.marks, m)
		served(p, load, load.ok.Load()+restartOKEach)
	}
	run.end = time.Now()
	load.stop()
	p.signal(t, syscall.SIGTERM)
	if code, _ := p.wait(t, exitBound); code != lifecycle.ExitOK {
		t.Errorf("%s: %s exited with status %d, want %d", mode, p.name, code, lifecycle.ExitOK)
	}
	load.mu.Lock()
	run.results = slices.Clone(load.results)
	load.mu.Unlock()

	kinds := make(map[string]int)
	for _, r := range run.results {
		if r.err != "" {
			kinds[errKind(r.err)]++
		}
	}
	t.Logf("%s: %d requests, %d failed %v", mode, len(run.results), run.failed(), kinds)
	for i, s := range run.stats() {
		window := ""
		if s.failed > 0 {
			window = fmt.Sprintf(", failures during %v", s.lastFail.Sub(s.firstFail).Round(time.Millisecond))
		}
		t.Logf("%s: restart %d: SIGTERM → exit %v, exit → next ready %v; %d requests sent, %d failed%s, longest %v, %d waited through the restart in the socket's queue",
			mode, i+1, s.stop.Round(time.Millisecond), s.gap.Round(time.Millisecond), s.sent, s.failed, window,
			s.longest.Round(time.Millisecond), s.waitedAcross)
	}
	if !activated {
		for _, r := range run.failures(5) {
			t.Logf("%s: failed: %s", mode, r)
		}
	}
	return run
}

// errKind sorts a client's error for the summary.
func errKind(err string) string {
	switch {
	case strings.Contains(err, "connection refused"):
		return "refused"
	case strings.Contains(err, "connection reset"):
		return "reset"
	case strings.Contains(err, "EOF"):
		return "EOF"
	case strings.Contains(err, "Timeout"), strings.Contains(err, "deadline"):
		return "timeout"
	}
	return "other"
}

// startActivated starts bin socket-activated, as systemd would: the socket
// sock as file descriptor 3, LISTEN_FDS=1, LISTEN_FDNAMES=name, and
// LISTEN_PID the pid of the process that runs bin (a shell that sets it to
// its own pid, then execs bin).
func startActivated(t *testing.T, pname string, sock *os.File, name, bin string, args ...string) *proc {
	t.Helper()
	sh := append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin}, args...)
	return startProcFiles(t, pname, []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=" + name}, []*os.File{sock}, "/bin/sh", sh...)
}

// findSocketActivate returns the path of systemd-socket-activate (Debian
// package systemd). Without it the test fails under CI, and is skipped,
// saying why, elsewhere.
func findSocketActivate(t *testing.T) string {
	if p, err := exec.LookPath("systemd-socket-activate"); err == nil {
		return p
	}
	const why = "systemd-socket-activate is not on PATH: the activation test needs it (apt-get install systemd; .ci/run installs it)"
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
	return ""
}

// testSystemdSocketActivate runs the example server under the real
// systemd-socket-activate, which listens on two ports, passes them named
// "grpc" (fd 3) and "http" (fd 4), in that order, and execs the server at the
// first connection. The server must serve HTTP on the socket named http and
// gRPC on the one named grpc (not the flags' addresses), and speak the notify
// protocol to a stand-in for systemd: READY=1, watchdog pings at the interval
// WATCHDOG_USEC asks, and on SIGTERM STOPPING=1, an extension of the stop
// timeout, and STATUS=stopped; then exit 0.
func testSystemdSocketActivate(t *testing.T, bin string) {
	activate := findSocketActivate(t)
	ports := freePorts(t, 2)
	grpcAddr, httpAddr := "127.0.0.1:"+ports[0], "127.0.0.1:"+ports[1]
	sd := listenNotify(t)
	gorace := cmpOr(os.Getenv("GORACE"), "atexit_sleep_ms=0")
	// systemd-socket-activate gives the service only the variables of -E.
	p := startProc(t, "systemd-socket-activate", activate,
		"-l", grpcAddr, "-l", httpAddr, "--fdname=grpc:http",
		"-E", "NOTIFY_SOCKET="+sd.path, "-E", "WATCHDOG_USEC=400000", "-E", "GORACE="+gorace,
		bin, "-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-drain-delay", "0",
		"-shutdown-timeout", "10s", "-log-format", "json")

	// The first connection makes the activator exec the server, which
	// answers it.
	p.waitReady(t, "http://"+httpAddr+"/readyz")
	gotHTTP, gotGRPC := p.addrs(t)
	if gotHTTP != httpAddr || gotGRPC != grpcAddr {
		t.Errorf("the server listens on http %s, grpc %s; want the sockets passed: http %s, grpc %s", gotHTTP, gotGRPC, httpAddr, grpcAddr)
	}
	if !p.logged(logMsg("server: socket activation: http serves on the inherited socket, -http-addr is ignored", "addr", httpAddr)) {
		t.Errorf("no log that http serves on the inherited socket %s", httpAddr)
	}
	resp, err := http.Get("http://" + httpAddr + "/work")
	if err != nil {
		t.Fatalf("GET /work: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /work: %s %q", resp.Status, body)
	}
	checkGRPCServing(t, p, grpcAddr)

	ready := sd.waitFor(t, "READY=1")
	sd.waitFor(t, "WATCHDOG=1")
	sd.waitFor(t, "WATCHDOG=1")

	p.signal(t, syscall.SIGTERM)
	code, _ := p.wait(t, exitBound)
	if code != lifecycle.ExitOK {
		t.Errorf("exit status %d, want %d", code, lifecycle.ExitOK)
	}
	stopping := sd.waitFor(t, "STOPPING=1")
	// WATCHDOG_USEC=400000 asks for a ping every 200 ms at most (half of it):
	// count those between READY=1 and STOPPING=1. A ticker is never early.
	const interval = 200 * time.Millisecond
	pings := sd.count("WATCHDOG=1", ready.at, stopping.at)
	if most := int(stopping.at.Sub(ready.at)/interval) + 2; pings < 2 || pings > most {
		t.Errorf("%d watchdog pings in the %v between READY=1 and STOPPING=1; want 2 to %d (one every %v)",
			pings, stopping.at.Sub(ready.at).Round(time.Millisecond), most, interval)
	}
	// The example gives the Notifier no budget: the extension comes from the
	// shutdown event's deadline, the rest of the 10 s budget + 1.2 s.
	ext := sd.waitFor(t, "EXTEND_TIMEOUT_USEC=")
	us, err := strconv.ParseInt(strings.TrimPrefix(ext.line, "EXTEND_TIMEOUT_USEC="), 10, 64)
	if d := time.Duration(us) * time.Microsecond; err != nil || d < 9*time.Second || d > 11200*time.Millisecond {
		t.Errorf("%s: want the rest of the 10 s budget + 1.2 s, between 9 s and 11.2 s", ext.line)
	}
	t.Logf("notify socket: READY=1; %d watchdog pings in %v until STOPPING=1; %s", pings, stopping.at.Sub(ready.at).Round(time.Millisecond), ext.line)
	sd.waitFor(t, "STATUS=stopped (lifecycle: received signal terminated)")
}

// checkGRPCServing waits until the gRPC health service at addr answers
// SERVING (the example sets it just after the Group is ready).
func checkGRPCServing(t *testing.T, p *proc, addr string) {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	var last string
	if !p.poll(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			last = err.Error()
			return false
		}
		last = resp.GetStatus().String()
		return resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	}) {
		t.Errorf("gRPC health on the socket named grpc (%s): %s, want SERVING", addr, last)
	}
}

// notifySocket stands in for systemd's notify socket: a unix datagram socket
// whose messages the test reads in order, each with the time it came.
type notifySocket struct {
	path string
	msgs chan sdMsg
	mu   sync.Mutex
	all  []sdMsg // every message read so far
}

type sdMsg struct {
	at   time.Time
	text string
	line string // the line that waitFor looked for
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd") // short: a socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &notifySocket{path: filepath.Join(dir, "notify"), msgs: make(chan sdMsg, 1000)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			m := sdMsg{at: time.Now(), text: string(buf[:n])}
			s.mu.Lock()
			s.all = append(s.all, m)
			s.mu.Unlock()
			select {
			case s.msgs <- m:
			default: // the test stopped reading
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return s
}

// waitFor reads messages until one has a line that begins with prefix, and
// returns it.
func (s *notifySocket) waitFor(t *testing.T, prefix string) sdMsg {
	t.Helper()
	timeout := time.After(startBound)
	var seen []string
	for {
		select {
		case m := <-s.msgs:
			for _, l := range strings.Split(m.text, "\n") {
				if strings.HasPrefix(l, prefix) {
					m.line = l
					return m
				}
			}
			seen = append(seen, strconv.Quote(m.text))
		case <-timeout:
			t.Fatalf("no %q to the notify socket within %v; got %s", prefix, startBound, strings.Join(seen, ", "))
			return sdMsg{}
		}
	}
}

// count returns how many messages that came in [from, to] have the line.
func (s *notifySocket) count(line string, from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.all {
		if !m.at.Before(from) && !m.at.After(to) && slices.Contains(strings.Split(m.text, "\n"), line) {
			n++
		}
	}
	return n
}
