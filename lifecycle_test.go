// End-to-end tests of graceful: they build the example programs and drive
// them as separate processes, the way an orchestrator, its clients and a load
// balancer would. Nothing of the library runs in the test process; every
// address is on 127.0.0.1 with a port picked at run time, every wait is
// bounded, and every process is killed and reaped when its test ends.
package graceful_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/graceful-go/graceful/lifecycle"
)

// Generous bounds for a shared, slow machine: they only limit how long a
// broken test hangs. The bounds that the tests assert are stated where they
// are used.
const (
	startBound = 30 * time.Second // from exec to ready, with a -race binary
	exitBound  = 20 * time.Second // from a signal to the exit, when no tighter bound is asserted
)

// TestExamples builds the example programs once and runs the end-to-end
// scenarios against them, one after the other.
func TestExamples(t *testing.T) {
	bins := buildExamples(t)
	t.Run("ShutdownUnderLoad", func(t *testing.T) { testShutdownUnderLoad(t, bins.server) })
	t.Run("HangingStop", func(t *testing.T) { testHangingStop(t, bins.server) })
	t.Run("SecondSignalForces", func(t *testing.T) { testSecondSignalForces(t, bins.server) })
	t.Run("RollingRestartBehindHAProxy", func(t *testing.T) { testRollingRestart(t, bins.server) })
	t.Run("ExitCodes", func(t *testing.T) { testExitCodes(t, bins.server) })
	t.Run("Minimal", func(t *testing.T) { testMinimal(t, bins.minimal) })
	t.Run("Jobs", func(t *testing.T) { testJobs(t, bins.server) })
}

type binaries struct{ server, minimal string }

// buildExamples builds the example programs into a temporary directory, with
// the race detector when the test itself has it, so that a data race in the
// library under real traffic fails the test (a -race binary exits with
// status 66 after a race).
//
// The examples are a module of their own (examples/go.mod), so that the
// library's go.mod does not carry their database drivers; the build runs in
// that module's directory, where it works with the repository's go.work and
// without it (GOWORK=off: examples/go.mod replaces the library with ../).
func buildExamples(t *testing.T) binaries {
	t.Helper()
	dir := t.TempDir()
	args := []string{"build", "-buildvcs=false", "-o", dir + string(filepath.Separator)}
	if raceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, "./server", "./minimal")
	began := time.Now()
	cmd := exec.Command("go", args...)
	cmd.Dir = "examples"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("(cd examples && go %s): %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("built the examples (race detector: %v) in %v", raceEnabled(), time.Since(began).Round(time.Millisecond))
	return binaries{server: filepath.Join(dir, "server"), minimal: filepath.Join(dir, "minimal")}
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// testShutdownUnderLoad sends SIGTERM while keep-alive HTTP clients hammer
// /work and a gRPC client calls the health service. Every request that was
// sent must get its answer: the only errors allowed are a connection refused
// (or reset while connecting) before anything was sent, once the listeners
// are closed, and an HTTP connection that the kernel reset because it was
// still in the listen queue, never accepted by the server, when the listener
// closed (the server's log of accepted connections tells them apart; they are
// counted and logged). During the drain, /work is still served and gRPC
// health answers NOT_SERVING. The process must exit with status 0, having
// stopped the servers before the worker, and the database last.
func testShutdownUnderLoad(t *testing.T, bin string) {
	const clients = 8
	drain := 500 * time.Millisecond
	p := startProc(t, "server", bin,
		"-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0",
		"-delay", "20ms", "-drain-delay", drain.String(), "-shutdown-timeout", "10s",
		"-log-format", "json", "-log-level", "debug")
	httpAddr, grpcAddr := p.addrs(t)
	p.waitReady(t, "http://"+httpAddr+"/readyz")

	hl := startHTTPLoad(t, clients, "http://"+httpAddr+"/work", true)
	gl := startGRPCLoad(t, grpcAddr)
	hl.waitOK(t, 10*clients)
	gl.waitOK(t, 20)

	sent := p.signal(t, syscall.SIGTERM)
	code, exited := p.wait(t, exitBound)
	hl.stop()
	gl.stop()
	t.Logf("SIGTERM → exit: %v; HTTP: %d ok (%d after SIGTERM), %d refused before sending; gRPC: %d ok (%d NOT_SERVING), %d refused before sending",
		exited.Sub(sent).Round(time.Millisecond), hl.ok.Load(), hl.okAfter(sent), hl.refused.Load(),
		gl.ok.Load(), gl.notServing.Load(), gl.refused.Load())

	if code != lifecycle.ExitOK {
		t.Errorf("exit status: have %d, want %d (ExitOK)", code, lifecycle.ExitOK)
	}
	for _, f := range gl.list() {
		t.Errorf("a gRPC call that was sent failed: %s", f)
	}
	// A connection that the kernel had established but the server had not
	// accepted yet when its listener closed is reset by the kernel: the
	// server never saw the request, as with a refused connection, but the
	// client had sent it. Any other failure, and any failure on a connection
	// that the server had accepted, is the server's.
	accepted := p.acceptedConns()
	inQueue := 0
	for _, e := range hl.failed() {
		if e.reset() && !e.reused && e.local != "" && !accepted[e.local] {
			inQueue++
			t.Logf("reset by the kernel, never accepted by the server (it was in the listen queue when the listener closed): %s", e)
			continue
		}
		t.Errorf("an HTTP request that was sent failed (the server had accepted its connection: %v): %s", accepted[e.local], e)
	}
	t.Logf("HTTP requests reset in the listen queue: %d", inQueue)
	if n := hl.okAfter(sent); n == 0 {
		t.Errorf("no /work request was served after SIGTERM: the drain delay did not keep the server serving")
	}
	if gl.notServing.Load() == 0 {
		t.Errorf("the gRPC health service never answered NOT_SERVING during the drain")
	}

	order := p.stopOrder()
	t.Logf("stop order: %v", order)
	pos := func(name string) int {
		i := slices.Index(order, name)
		if i < 0 {
			t.Fatalf("component %q never stopped; stop order %v", name, order)
		}
		return i
	}
	// http, grpc and the worker need only the database: they stop together,
	// in any order, and the database after all of them.
	for _, name := range []string{"http", "grpc", "worker"} {
		pos(name)
	}
	if pos("db") != len(order)-1 {
		t.Errorf("stop order %v: want db last", order)
	}
}

// testHangingStop adds a component whose Stop never returns and gives the
// shutdown a 1 s budget: the process must still exit within the budget plus
// 0.5 s, with ExitTimeout, naming the component, and still close the database.
func testHangingStop(t *testing.T, bin string) {
	const budget = time.Second
	p := startProc(t, "server", bin,
		"-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0",
		"-hang-stop", "-drain-delay", "200ms", "-shutdown-timeout", budget.String(), "-log-format", "json")
	httpAddr, _ := p.addrs(t)
	p.waitReady(t, "http://"+httpAddr+"/readyz")

	// The example serves the Group's lifecycle as Prometheus metrics.
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{
		`graceful_phase{phase="running"} 1`,
		`graceful_component_state{component="db",state="running"} 1`,
		`graceful_component_state{component="stuck",state="running"} 1`,
		`graceful_component_start_duration_seconds_count{component="http"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /metrics: no line %s", want)
		}
	}

	sent := p.signal(t, syscall.SIGTERM)
	code, exited := p.wait(t, exitBound)
	took := exited.Sub(sent)
	t.Logf("SIGTERM → exit with a Stop that never returns, budget %v: %v", budget, took.Round(time.Millisecond))
	if code != lifecycle.ExitTimeout {
		t.Errorf("exit status: have %d, want %d (ExitTimeout)", code, lifecycle.ExitTimeout)
	}
	if limit := budget + 500*time.Millisecond; took > limit {
		t.Errorf("exited %v after SIGTERM, want at most %v", took, limit)
	}
	if !p.logged(logMsg("lifecycle: component abandoned", "component", "stuck")) {
		t.Errorf(`no "lifecycle: component abandoned" log for component "stuck"`)
	}
	if !p.logged(func(e logEntry) bool {
		return e.str("msg") == "server: exit" && strings.Contains(e.str("err"), "stuck")
	}) {
		t.Errorf(`the exit log does not name the component "stuck"`)
	}
	if order := p.stopOrder(); !slices.Contains(order, "db") {
		t.Errorf("stop order %v: the database did not stop after the stuck component was abandoned", order)
	}
}

// testSecondSignalForces sends SIGTERM, then SIGINT while a 5 s request is
// in flight, once during the drain and once while the HTTP server waits for
// the request: the process must exit within 0.5 s of the second signal with
// ExitForced.
func testSecondSignalForces(t *testing.T, bin string) {
	for _, tc := range []struct {
		name  string
		drain time.Duration
		after func(logEntry) bool // the log line that shows the phase the second signal must hit
	}{
		{"DuringDrain", 5 * time.Second, logMsg("lifecycle: draining: readiness is off; serving on for the drain delay so that load balancers stop routing here")},
		{"DuringStop", 0, logMsg("lifecycle: component stopping", "component", "http")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProc(t, "server", bin,
				"-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0",
				"-delay", "5s", "-drain-delay", tc.drain.String(), "-shutdown-timeout", "10s",
				"-log-format", "json", "-log-level", "debug")
			httpAddr, _ := p.addrs(t)
			p.waitReady(t, "http://"+httpAddr+"/readyz")

			res := make(chan string, 1)
			go func() {
				c := &http.Client{Timeout: 15 * time.Second}
				resp, err := c.Get("http://" + httpAddr + "/work")
				if err != nil {
					res <- err.Error()
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				res <- resp.Status + " " + string(bytes.TrimSpace(body))
			}()
			p.waitLog(t, logMsg("work: begin"))
			p.signal(t, syscall.SIGTERM)
			p.waitLog(t, tc.after)
			sent := p.signal(t, syscall.SIGINT)
			code, exited := p.wait(t, exitBound)
			took := exited.Sub(sent)
			t.Logf("SIGINT after SIGTERM → exit: %v", took.Round(time.Millisecond))
			if code != lifecycle.ExitForced {
				t.Errorf("exit status: have %d, want %d (ExitForced)", code, lifecycle.ExitForced)
			}
			if limit := 500 * time.Millisecond; took > limit {
				t.Errorf("exited %v after the second signal, want at most %v", took, limit)
			}
			select {
			case r := <-res:
				t.Logf("the in-flight request, cut short: %s", r)
			case <-time.After(exitBound):
				t.Errorf("the in-flight request did not end after the process exited")
			}
		})
	}
}

// testExitCodes checks the exit statuses of a program that does not get as far
// as a shutdown: invalid flags exit with ExitInvalid before anything starts, a
// port in use with ExitFailure after what had started was stopped.
func testExitCodes(t *testing.T, bin string) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		args []string
		want int
		says string // in the standard error
	}{
		{"UnknownLogFormat", []string{"-log-format", "xml"}, lifecycle.ExitInvalid, "xml"},
		{"DrainNotShorterThanBudget", []string{"-drain-delay", "2s", "-shutdown-timeout", "2s"}, lifecycle.ExitInvalid, "drain delay"},
		{"PortInUse", []string{"-http-addr", busy.Addr().String()}, lifecycle.ExitFailure, "start http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0"}, tc.args...)
			p := startProc(t, "server", bin, args...)
			code, _ := p.wait(t, exitBound)
			if code != tc.want {
				t.Errorf("exit status: have %d, want %d", code, tc.want)
			}
			if all := strings.Join(p.stderr.snapshot(), "\n"); !strings.Contains(all, tc.says) {
				t.Errorf("standard error does not say %q:\n%s", tc.says, all)
			}
		})
	}
}

// HAProxy's active health checks in the rolling-restart test, and the drain
// delay they call for: a check every checkInter; checkFall failures in a row
// mark a server down. After readiness turns off, the next check comes within
// one interval and the server is down checkFall intervals later; the margin
// covers a slow, shared machine running -race binaries.
const (
	checkInter  = 100 * time.Millisecond
	checkFall   = 2
	drainMargin = 700 * time.Millisecond
	rollDrain   = (checkFall+1)*checkInter + drainMargin

	minLoad = 3 * time.Second // how long the load through HAProxy lasts, at least

	rollJobs = 200 // jobs of 50 ms that the instances share during the rolling restart
)

// testRollingRestart restarts two instances one after the other behind a
// real HAProxy under constant load, first with a drain delay sized to the
// health checks (no client may see an error), then with no drain delay (the
// errors a user would see are logged, not asserted). Both times the two
// instances share a database and a queue of jobs, enqueued through HAProxy
// before the restarts: every job must be done exactly once.
func testRollingRestart(t *testing.T, bin string) {
	haproxy := findHAProxy(t)
	with := rollingRestart(t, haproxy, bin, rollDrain)
	without := rollingRestart(t, haproxy, bin, 0)
	t.Logf("rolling restart of 2 instances behind HAProxy: drain delay %v: %d errors in %d requests; drain delay 0: %d errors in %d requests",
		rollDrain, with.errors, with.requests, without.errors, without.requests)
	if with.errors != 0 {
		t.Errorf("with a drain delay of %v, clients saw %d errors in %d requests; want 0", rollDrain, with.errors, with.requests)
	}
}

func findHAProxy(t *testing.T) string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	const why = "haproxy is not on PATH nor in /usr/sbin: the rolling-restart test needs a real load balancer (apt-get install haproxy)"
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
	return ""
}

type rollResult struct{ requests, errors int }

// rollingRestart runs two instances of the server behind HAProxy, puts a
// constant load through HAProxy, restarts instance a, then b, and returns
// what the clients saw.
//
// HAProxy is configured to show, not hide, what the instances do: active
// checks of GET /readyz every checkInter (fall checkFall, rise 1), "retries 0"
// and "retry-on none" so that a request sent to an instance that is gone is a
// 503 for the client, and no "option redispatch". Between the restarts the
// test waits until HAProxy reports the restarted instance UP, as an
// orchestrator waits for a new pod to be ready before it replaces the next.
func rollingRestart(t *testing.T, haproxy, bin string, drain time.Duration) rollResult {
	t.Helper()
	const clients = 4
	ports := freePorts(t, 4)
	front, stats := ports[2], ports[3]
	instances := map[string]string{"a": ports[0], "b": ports[1]}
	// The two instances share a database (a SQLite file) and a job queue.
	db := filepath.Join(t.TempDir(), "shared.db")
	queue := "rolling-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := func(name string) *proc {
		p := startProc(t, "instance "+name, bin,
			"-http-addr", "127.0.0.1:"+instances[name], "-grpc-addr", "127.0.0.1:0",
			"-delay", "20ms", "-drain-delay", drain.String(), "-shutdown-timeout", "10s", "-log-format", "json",
			"-db-path", db, "-queue", queue, "-job-time", "50ms")
		p.waitReady(t, "http://127.0.0.1:"+instances[name]+"/readyz")
		return p
	}
	running := map[string]*proc{"a": start("a"), "b": start("b")}
	allInstances := []*proc{running["a"], running["b"]}

	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(front, stats, instances["a"], instances["b"])), 0o644); err != nil {
		t.Fatal(err)
	}
	lb := startProc(t, "haproxy", haproxy, "-db", "-f", cfg)
	statsURL := "http://127.0.0.1:" + stats + "/stats;csv"
	lb.waitUp(t, statsURL, "a")
	lb.waitUp(t, statsURL, "b")

	// Jobs, enqueued through HAProxy: the two instances' workers share them,
	// and are restarted in the middle of them.
	viaLB := &jobServer{proc: lb, http: "127.0.0.1:" + front}
	ids := viaLB.enqueueHTTP(t, strconv.Itoa(rollJobs))

	load := startHTTPLoad(t, clients, "http://127.0.0.1:"+front+"/work", false)
	loadEnd := time.Now().Add(minLoad)
	load.waitOK(t, 50)
	for _, name := range []string{"a", "b"} {
		p := running[name]
		left := viaLB.stats(t).Queued
		sent := p.signal(t, syscall.SIGTERM)
		code, exited := p.wait(t, exitBound)
		if code != lifecycle.ExitOK {
			t.Errorf("instance %s: exit status %d, want %d", name, code, lifecycle.ExitOK)
		}
		if name == "a" && left == 0 {
			t.Errorf("the job queue was empty before the first restart: the test did not restart in the middle of the jobs")
		}
		checkStopOrder(t, p)
		t.Logf("drain %v: instance %s exited %v after SIGTERM, with %d jobs queued", drain, name, exited.Sub(sent).Round(time.Millisecond), left)
		running[name] = start(name)
		allInstances = append(allInstances, running[name])
		lb.waitUp(t, statsURL, name)
		load.waitOK(t, load.ok.Load()+50)
	}
	<-time.After(time.Until(loadEnd)) // the load lasts minLoad at least, whatever the restarts took
	load.stop()

	st := viaLB.waitStats(t, "the job queue empty", func(st jobStats) bool { return st.Queued == 0 && st.Running == 0 })
	var perInstance []int
	seen := make(map[int64]int)
	for _, p := range allInstances {
		done := p.jobsLogged("worker: done")
		perInstance = append(perInstance, len(done))
		for _, id := range done {
			seen[id]++
		}
	}
	t.Logf("drain %v: %d jobs shared by the instances, done per process (a, b, a restarted, b restarted) %v; stats %+v",
		drain, rollJobs, perInstance, st)
	if st.Done != rollJobs || st.Total != rollJobs || st.Completions != rollJobs || st.DoneTwice != 0 || st.Lost != 0 {
		t.Errorf("drain %v: job stats %+v: want exactly %d jobs, all done, %d completions, 0 done twice, 0 lost", drain, st, rollJobs, rollJobs)
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("drain %v: job %d: the logs say it was done %d times, want once", drain, id, seen[id])
		}
	}

	fails := load.failed()
	res := rollResult{requests: int(load.ok.Load()) + len(fails), errors: len(fails)}
	for i, f := range fails {
		if i == 5 {
			t.Logf("drain %v: … and %d more", drain, len(fails)-i)
			break
		}
		t.Logf("drain %v: client error: %s", drain, f)
	}
	if len(fails) > 0 {
		var bad []string
		for _, l := range lb.stderr.snapshot() {
			if strings.Contains(l, " app/") && !strings.Contains(l, " 200 ") && !strings.Contains(l, " /jobs") {
				bad = append(bad, l)
			}
		}
		t.Logf("drain %v: HAProxy logged %d failed requests, e.g.:\n%s", drain, len(bad), strings.Join(bad[:min(len(bad), 5)], "\n"))
	}
	return res
}

func haproxyConfig(front, stats, a, b string) string {
	return fmt.Sprintf(`global
	log stderr format raw local0 info
	maxconn 256

defaults
	mode http
	log global
	option httplog
	timeout connect 1s
	timeout client 10s
	timeout server 10s
	timeout check 500ms
	# A request sent to an instance that is gone must reach the client as an
	# error: the test measures the instances' drain, not HAProxy's retries.
	retries 0
	retry-on none

frontend web
	bind 127.0.0.1:%[1]s
	default_backend app

backend app
	balance roundrobin
	option httpchk GET /readyz
	http-check expect status 200
	default-server inter %[3]dms fastinter %[3]dms downinter %[3]dms fall %[4]d rise 1
	server a 127.0.0.1:%[5]s check
	server b 127.0.0.1:%[6]s check

frontend stats
	bind 127.0.0.1:%[2]s
	stats enable
	stats uri /stats
`, front, stats, checkInter.Milliseconds(), checkFall, a, b)
}

// waitUp polls the CSV statistics of HAProxy (the process p) until server
// is UP in backend app.
func (p *proc) waitUp(t *testing.T, statsURL, server string) {
	t.Helper()
	var last string
	ok := p.poll(t, func() bool {
		last = haproxyStatus(statsURL, server)
		return last == "UP"
	})
	if !ok {
		t.Fatalf("HAProxy did not report server %s UP within %v; last status %q", server, startBound, last)
	}
}

func haproxyStatus(statsURL, server string) string {
	resp, err := http.Get(statsURL)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	r := csv.NewReader(bufio.NewReader(resp.Body))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil || len(recs) == 0 {
		return fmt.Sprintf("unreadable statistics: %v", err)
	}
	col := slices.Index(recs[0], "status")
	for _, rec := range recs[1:] {
		if len(rec) > col && col >= 0 && rec[0] == "app" && rec[1] == server {
			return rec[col]
		}
	}
	return "no such server"
}

// testMinimal runs the README's first program: it must serve, and on SIGTERM
// drain for the library's default delay (5 s) and exit with status 0.
func testMinimal(t *testing.T, bin string) {
	addr := "127.0.0.1:" + freePorts(t, 1)[0]
	p := startProcEnv(t, "minimal", []string{"ADDR=" + addr}, bin)
	p.waitReady(t, "http://"+addr+"/readyz")
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello\n" {
		t.Errorf("GET /: have %s %q, want 200 \"hello\\n\"", resp.Status, body)
	}
	sent := p.signal(t, syscall.SIGTERM)
	code, exited := p.wait(t, exitBound)
	took := exited.Sub(sent)
	t.Logf("minimal: SIGTERM → exit: %v", took.Round(time.Millisecond))
	if code != lifecycle.ExitOK {
		t.Errorf("exit status: have %d, want %d (ExitOK)", code, lifecycle.ExitOK)
	}
	const drain = 5 * time.Second // the default: a fifth of the default shutdown timeout
	if took < drain {
		t.Errorf("exited %v after SIGTERM: the default drain delay is %v", took, drain)
	}
}

// proc is a running example program (or HAProxy), with what it wrote.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr *lineBuf
	done           chan struct{} // closed when the process has exited and was reaped
	exitCode       int           // valid once done is closed
	exitedAt       time.Time     // valid once done is closed
}

// startProc starts bin with args, and with the environment variables of env
// ("KEY=value") added to the test's, in a temporary directory of its own
// (where the example server creates its default SQLite database), and makes
// sure it is killed and reaped when the test ends; if the test failed, the end
// of its output is logged.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	return startProcEnv(t, name, nil, bin, args...)
}

func startProcEnv(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	return startProcFiles(t, name, env, nil, bin, args...)
}

// startProcFiles is startProcEnv with files passed to the process as file
// descriptors 3, 4, ... (socket activation).
func startProcFiles(t *testing.T, name string, env []string, files []*os.File, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, stdout: &lineBuf{}, stderr: &lineBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = t.TempDir()
	p.cmd.Env = append(os.Environ(), env...)
	if os.Getenv("GORACE") == "" {
		// A -race binary sleeps 1 s before a clean exit, waiting for late
		// reports; the exit timings here are those of the program.
		p.cmd.Env = append(p.cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	p.cmd.ExtraFiles = files
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.exitedAt = time.Now()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if !t.Failed() {
			return
		}
		all := p.stderr.snapshot()
		if i := slices.Index(all, "WARNING: DATA RACE"); i >= 0 {
			t.Logf("%s found a data race:\n%s", name, strings.Join(all[i:], "\n"))
			return
		}
		t.Logf("%s (exit status %d) stderr, last lines:\n%s", name, p.exitCode, strings.Join(p.stderr.tail(40), "\n"))
	})
	return p
}

// signal sends sig to the process and returns when it was sent.
func (p *proc) signal(t *testing.T, sig os.Signal) time.Time {
	t.Helper()
	now := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
	return now
}

// wait waits up to timeout for the process to exit, and returns its exit
// status and when it exited.
func (p *proc) wait(t *testing.T, timeout time.Duration) (int, time.Time) {
	t.Helper()
	select {
	case <-p.done:
		return p.exitCode, p.exitedAt
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.name, timeout)
		return 0, time.Time{}
	}
}

// addrs waits for the "listen http" and "listen grpc" lines that the server
// prints once it is ready, and returns the two addresses.
func (p *proc) addrs(t *testing.T) (httpAddr, grpcAddr string) {
	t.Helper()
	for _, proto := range []string{"http", "grpc"} {
		prefix := "listen " + proto + " "
		l, ok := p.stdout.waitFor(startBound, p.done, func(l string) bool { return strings.HasPrefix(l, prefix) })
		if !ok {
			t.Fatalf("%s did not print %q within %v", p.name, prefix+"…", startBound)
		}
		if proto == "http" {
			httpAddr = strings.TrimPrefix(l, prefix)
		} else {
			grpcAddr = strings.TrimPrefix(l, prefix)
		}
	}
	return httpAddr, grpcAddr
}

// logEntry is one line of a JSON log.
type logEntry map[string]any

func (e logEntry) str(key string) string {
	s, _ := e[key].(string)
	return s
}

// logMsg matches a log entry with message msg and the given string
// attributes, as key, value pairs.
func logMsg(msg string, kv ...string) func(logEntry) bool {
	return func(e logEntry) bool {
		if e.str("msg") != msg {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if e.str(kv[i]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

func parseLog(line string) (logEntry, bool) {
	var e logEntry
	if json.Unmarshal([]byte(line), &e) != nil {
		return nil, false
	}
	return e, true
}

// waitLog waits for a JSON log entry that match accepts.
func (p *proc) waitLog(t *testing.T, match func(logEntry) bool) {
	t.Helper()
	_, ok := p.stderr.waitFor(startBound, p.done, func(l string) bool {
		e, ok := parseLog(l)
		return ok && match(e)
	})
	if !ok {
		t.Fatalf("%s: the expected log entry did not come within %v", p.name, startBound)
	}
}

// logged reports whether a JSON log entry that match accepts was written.
func (p *proc) logged(match func(logEntry) bool) bool {
	for _, l := range p.stderr.snapshot() {
		if e, ok := parseLog(l); ok && match(e) {
			return true
		}
	}
	return false
}

// acceptedConns returns the client addresses of the HTTP connections that
// the server logged as accepted (at -log-level debug).
func (p *proc) acceptedConns() map[string]bool {
	m := make(map[string]bool)
	for _, l := range p.stderr.snapshot() {
		if e, ok := parseLog(l); ok && e.str("msg") == "http: connection accepted" {
			m[e.str("remote")] = true
		}
	}
	return m
}

// stopOrder returns the components in the order the log says they stopped.
func (p *proc) stopOrder() []string {
	var order []string
	for _, l := range p.stderr.snapshot() {
		if e, ok := parseLog(l); ok && e.str("msg") == "lifecycle: component stopped" {
			order = append(order, e.str("component"))
		}
	}
	return order
}

// lineBuf collects what a process writes, as lines, and lets a test wait for
// a line.
type lineBuf struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed at the next complete line; nil when nobody waits
}

func (b *lineBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.partial[:i]))
		b.partial = b.partial[i+1:]
		added = true
	}
	if added && b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return len(p), nil
}

// waitFor returns the first line that match accepts, waiting for it up to
// timeout or until gone is closed (the writer has exited).
func (b *lineBuf) waitFor(timeout time.Duration, gone <-chan struct{}, match func(string) bool) (string, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for seen, last := 0, false; ; {
		b.mu.Lock()
		for ; seen < len(b.lines); seen++ {
			if match(b.lines[seen]) {
				l := b.lines[seen]
				b.mu.Unlock()
				return l, true
			}
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		changed := b.changed
		b.mu.Unlock()
		if last {
			return "", false
		}
		select {
		case <-changed:
		case <-gone:
			last = true // one more look at what it wrote before it exited
		case <-deadline.C:
			return "", false
		}
	}
}

func (b *lineBuf) snapshot() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.lines)
}

func (b *lineBuf) tail(n int) []string {
	l := b.snapshot()
	return l[max(0, len(l)-n):]
}

// poll calls cond every 20 ms until it returns true, for at most timeout.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// waitReady polls a readiness URL of the process until it answers 200.
func (p *proc) waitReady(t *testing.T, url string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	ok := p.poll(t, func() bool {
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ok {
		t.Fatalf("%s did not answer 200 within %v", url, startBound)
	}
}

// poll polls cond for at most startBound, and fails the test at once if the
// process exits meanwhile.
func (p *proc) poll(t *testing.T, cond func() bool) bool {
	t.Helper()
	exited := false
	ok := poll(startBound, func() bool {
		select {
		case <-p.done:
			exited = true
			return true
		default:
			return cond()
		}
	})
	if exited {
		t.Fatalf("%s exited (status %d) while the test waited for it", p.name, p.exitCode)
	}
	return ok
}

// freePorts returns n distinct ports of 127.0.0.1 that were free a moment
// ago, for processes that must listen on a port known in advance (HAProxy's
// configuration names them).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		ports = append(ports, port)
	}
	return ports
}

// failures collects the errors that clients saw, each with the time it was
// seen (UTC, as in the programs' logs).
type failures struct {
	mu   sync.Mutex
	errs []string
}

func (f *failures) add(format string, args ...any) {
	at := time.Now().UTC().Format("15:04:05.000000 ")
	f.mu.Lock()
	f.errs = append(f.errs, at+fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *failures) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.errs)
}

// httpLoad is a fixed number of clients, each with a keep-alive connection of
// its own, that send GET requests one after the other until stopped.
type httpLoad struct {
	ok      atomic.Int64
	refused atomic.Int64 // connections refused, or reset while connecting: nothing was sent
	quit    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	mu   sync.Mutex
	done []time.Time // when each successful response was read
	errs []clientErr // requests that were sent and failed
}

// clientErr is a request that was sent and failed.
type clientErr struct {
	at     time.Time
	local  string // the client's address of the connection, if it got one
	reused bool   // the connection had carried a request before
	err    error  // nil for a response other than 200
	status string // the response, when err is nil
}

// reset reports whether the connection was reset before any response came.
func (e clientErr) reset() bool { return errors.Is(e.err, syscall.ECONNRESET) }

func (e clientErr) String() string {
	conn := "no connection"
	if e.local != "" {
		conn = "new connection from " + e.local
		if e.reused {
			conn = "reused connection from " + e.local
		}
	}
	what := e.status
	if e.err != nil {
		what = e.err.Error()
	}
	return fmt.Sprintf("%s %s: %s", e.at.UTC().Format("15:04:05.000000"), conn, what)
}

// startHTTPLoad starts clients that GET url, until stop is called or the test
// ends. With direct (the clients talk to the server, not to a load balancer),
// a client ends at the first connection refused, the server having gone;
// without, a refused connection is an error like any other.
func startHTTPLoad(t *testing.T, clients int, url string, direct bool) *httpLoad {
	l := &httpLoad{quit: make(chan struct{})}
	t.Cleanup(l.stop)
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for {
				select {
				case <-l.quit:
					return
				default:
				}
				var ce clientErr
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
					ce.local, ce.reused = i.Conn.LocalAddr().String(), i.Reused
				}}
				req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
				if err != nil {
					panic(err)
				}
				resp, err := c.Do(req)
				if err != nil {
					var op *net.OpError
					if errors.As(err, &op) && op.Op == "dial" && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)) {
						l.refused.Add(1)
						if direct {
							return
						}
					}
					ce.err = err
					l.fail(ce)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					ce.err = fmt.Errorf("reading the body: %w", err)
					l.fail(ce)
				case resp.StatusCode != http.StatusOK:
					ce.status = resp.Status + ": " + strings.Join(strings.Fields(string(body)), " ")
					l.fail(ce)
				default:
					l.ok.Add(1)
					l.mu.Lock()
					l.done = append(l.done, time.Now())
					l.mu.Unlock()
				}
			}
		}()
	}
	return l
}

func (l *httpLoad) fail(e clientErr) {
	e.at = time.Now()
	l.mu.Lock()
	l.errs = append(l.errs, e)
	l.mu.Unlock()
}

// failed returns the requests that were sent and failed.
func (l *httpLoad) failed() []clientErr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// stop ends the clients, letting each finish its request, and waits for them.
func (l *httpLoad) stop() {
	l.once.Do(func() { close(l.quit) })
	l.wg.Wait()
}

// okAfter returns how many responses were read after t.
func (l *httpLoad) okAfter(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, d := range l.done {
		if d.After(t) {
			n++
		}
	}
	return n
}

// waitOK waits until n requests have succeeded in all.
func (l *httpLoad) waitOK(t *testing.T, n int64) {
	t.Helper()
	if !poll(startBound, func() bool { return l.ok.Load() >= n || len(l.failed()) > 100 }) {
		t.Fatalf("HTTP load: %d requests ok, want %d within %v; failures: %v", l.ok.Load(), n, startBound, l.failed())
	}
}

// grpcLoad is one gRPC client that calls grpc.health.v1.Health/Check, one
// call after the other, until stopped or refused.
type grpcLoad struct {
	failures
	ok, notServing atomic.Int64
	refused        atomic.Int64
	quit, ended    chan struct{}
	once           sync.Once
}

func startGRPCLoad(t *testing.T, addr string) *grpcLoad {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	l := &grpcLoad{quit: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(l.ended)
		defer cc.Close()
		hc := healthpb.NewHealthClient(cc)
		for {
			select {
			case <-l.quit:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			switch {
			case err == nil:
				l.ok.Add(1)
				if resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
					l.notServing.Add(1)
				}
			case status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "connection refused"):
				// The listener is closed: the call was never sent.
				l.refused.Add(1)
				return
			default:
				l.add("Health/Check: %v", err)
			}
		}
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *grpcLoad) stop() {
	l.once.Do(func() { close(l.quit) })
	<-l.ended
}

func (l *grpcLoad) waitOK(t *testing.T, n int64) {
	t.Helper()
	if !poll(startBound, func() bool { return l.ok.Load() >= n || len(l.list()) > 100 }) {
		t.Fatalf("gRPC load: %d calls ok, want %d within %v; failures: %v", l.ok.Load(), n, startBound, l.list())
	}
}

// The job queue of the example server (examples/server: POST /jobs, the
// gRPC method graceful.example.Jobs/Enqueue, GET /jobs/stats, a worker that
// claims one job at a time), against SQLite and, when a DSN is given,
// PostgreSQL. Every scenario uses a queue of its own (-queue), so they can
// share a PostgreSQL database with each other and with earlier runs.

// postgresEnv names the environment variable with the DSN of a PostgreSQL
// database for the job tests (.ci/run starts one and sets it).
const postgresEnv = "GRACEFUL_TEST_POSTGRES"

// jobBackend is a database the job tests run against.
type jobBackend struct {
	name string
	args func(dir string) []string // the -db flags, given a directory of the test's own
}

func jobBackends(t *testing.T) []jobBackend {
	backends := []jobBackend{{"SQLite", func(dir string) []string {
		return []string{"-db-path", filepath.Join(dir, "jobs.db")}
	}}}
	dsn := os.Getenv(postgresEnv)
	switch {
	case dsn != "":
		backends = append(backends, jobBackend{"PostgreSQL", func(string) []string { return []string{"-db", dsn} }})
	case os.Getenv("CI") != "":
		t.Errorf("%s is not set: CI must run the job tests against PostgreSQL too (.ci/run starts one)", postgresEnv)
	default:
		t.Logf("%s is not set: the job tests run against SQLite only (set it to a postgres:// DSN, or run .ci/run, for PostgreSQL)", postgresEnv)
	}
	return backends
}

// testJobs runs the job-queue scenarios against every backend.
func testJobs(t *testing.T, bin string) {
	for _, b := range jobBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Run("AcrossRestarts", func(t *testing.T) { testJobsAcrossRestarts(t, bin, b) })
			t.Run("JobInHandFinishes", func(t *testing.T) { testJobInHandFinishes(t, bin, b) })
			t.Run("StuckJobReleased", func(t *testing.T) { testStuckJobReleased(t, bin, b) })
			t.Run("KilledProcessLeaseExpires", func(t *testing.T) { testKilledProcessLeaseExpires(t, bin, b) })
		})
	}
}

// jobScene is the database and queue of one job scenario: the runs of the
// server in it share them.
type jobScene struct {
	backend jobBackend
	dir     string // for a SQLite file
	queue   string
}

func newJobScene(t *testing.T, b jobBackend) jobScene {
	queue := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	return jobScene{backend: b, dir: t.TempDir(), queue: queue}
}

// args returns the flags of a server in the scene: ports picked at run time,
// no drain delay (no load balancer here), the scene's database and queue,
// JSON logs with every claim, and then extra.
func (sc jobScene) args(extra ...string) []string {
	args := []string{"-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-drain-delay", "0",
		"-queue", sc.queue, "-log-format", "json", "-log-level", "debug"}
	return append(append(args, sc.backend.args(sc.dir)...), extra...)
}

// jobServer is a running example server in a job scenario.
type jobServer struct {
	*proc
	http, grpc string
}

func startJobServer(t *testing.T, name, bin string, args []string) *jobServer {
	t.Helper()
	p := startProc(t, name, bin, args...)
	s := &jobServer{proc: p}
	s.http, s.grpc = p.addrs(t)
	p.waitReady(t, "http://"+s.http+"/readyz")
	return s
}

// jobStats is the answer of GET /jobs/stats.
type jobStats struct {
	Queued      int64 `json:"queued"`
	Running     int64 `json:"running"`
	Expired     int64 `json:"expired"`
	Done        int64 `json:"done"`
	Total       int64 `json:"total"`
	Completions int64 `json:"completions"`
	DoneTwice   int64 `json:"done_twice"`
	Lost        int64 `json:"lost"`
	Claims      int64 `json:"claims"`
	Releases    int64 `json:"releases"`
	Reclaims    int64 `json:"reclaims"`
	OtherStatus int64 `json:"other_status"`
}

func (s *jobServer) stats(t *testing.T) jobStats {
	t.Helper()
	resp, err := http.Get("http://" + s.http + "/jobs/stats")
	if err != nil {
		t.Fatalf("%s: GET /jobs/stats: %v", s.name, err)
	}
	defer resp.Body.Close()
	var st jobStats
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: GET /jobs/stats: %s %s", s.name, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("%s: GET /jobs/stats: %v", s.name, err)
	}
	return st
}

// waitStats polls GET /jobs/stats until cond accepts the answer, and returns it.
func (s *jobServer) waitStats(t *testing.T, what string, cond func(jobStats) bool) jobStats {
	t.Helper()
	var st jobStats
	if !s.poll(t, func() bool { st = s.stats(t); return cond(st) }) {
		t.Fatalf("%s: %s: not within %v; stats %+v", s.name, what, startBound, st)
	}
	return st
}

// enqueueHTTP sends POST /jobs with body and returns the ids it answered.
func (s *jobServer) enqueueHTTP(t *testing.T, body string) []int64 {
	t.Helper()
	resp, err := http.Post("http://"+s.http+"/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: POST /jobs: %v", s.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct{ IDs []int64 }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &out) != nil {
		t.Fatalf("%s: POST /jobs %s: %s %s", s.name, body, resp.Status, bytes.TrimSpace(b))
	}
	return out.IDs
}

// enqueueGRPC calls graceful.example.Jobs/Enqueue with {"count": n} and
// returns the ids it answered.
func (s *jobServer) enqueueGRPC(t *testing.T, n int) []int64 {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), exitBound)
	defer cancel()
	in, err := structpb.NewStruct(map[string]any{"count": n})
	if err != nil {
		t.Fatal(err)
	}
	out := new(structpb.Struct)
	if err := cc.Invoke(ctx, "/graceful.example.Jobs/Enqueue", in, out); err != nil {
		t.Fatalf("%s: gRPC Enqueue: %v", s.name, err)
	}
	var ids []int64
	for _, v := range out.GetFields()["ids"].GetListValue().GetValues() {
		ids = append(ids, int64(v.GetNumberValue()))
	}
	return ids
}

// stop sends SIGTERM, waits for the exit, and checks that it was clean and
// that the log shows the worker stopped before the database, and the
// database last.
func (s *jobServer) stop(t *testing.T) {
	t.Helper()
	sent := s.signal(t, syscall.SIGTERM)
	code, exited := s.wait(t, exitBound)
	order := s.stopOrder()
	t.Logf("%s: SIGTERM → exit %d in %v; stop order %v", s.name, code, exited.Sub(sent).Round(time.Millisecond), order)
	if code != lifecycle.ExitOK {
		t.Errorf("%s: exit status %d, want %d (ExitOK)", s.name, code, lifecycle.ExitOK)
	}
	checkStopOrder(t, s.proc)
}

// checkStopOrder checks that the log of p shows the worker stopped before
// the database, and the database last.
func checkStopOrder(t *testing.T, p *proc) {
	t.Helper()
	order := p.stopOrder()
	w, db := slices.Index(order, "worker"), slices.Index(order, "db")
	if w < 0 || db != len(order)-1 {
		t.Errorf("%s: stop order %v: want the worker stopped, and the database last", p.name, order)
	}
}

// jobsLogged returns the ids of the jobs whose log says msg ("worker: done",
// "worker: claimed", ...), in order.
func (p *proc) jobsLogged(msg string) []int64 {
	var ids []int64
	for _, l := range p.stderr.snapshot() {
		if e, ok := parseLog(l); ok && e.str("msg") == msg {
			if id, ok := e["job"].(float64); ok {
				ids = append(ids, int64(id))
			}
		}
	}
	return ids
}

// logIndex returns the position in the log of the first entry that match
// accepts, or -1.
func (p *proc) logIndex(match func(logEntry) bool) int {
	for i, l := range p.stderr.snapshot() {
		if e, ok := parseLog(l); ok && match(e) {
			return i
		}
	}
	return -1
}

// jobMsg matches a log entry with message msg about job id.
func jobMsg(msg string, id int64) func(logEntry) bool {
	return func(e logEntry) bool {
		f, ok := e["job"].(float64)
		return e.str("msg") == msg && ok && int64(f) == id
	}
}

// testJobsAcrossRestarts enqueues 200 jobs (100 through HTTP, 100 through
// gRPC), SIGTERMs the server in the middle of them three times, starting it
// again on the same database each time, and lets the fourth run empty the
// queue: exactly 200 jobs done, none done twice, none lost (the stats of the
// database, and the "worker: done" lines of the four logs, each id once),
// and every run stopped the worker before the database.
func testJobsAcrossRestarts(t *testing.T, bin string, b jobBackend) {
	const jobs, restarts = 200, 3
	args := newJobScene(t, b).args("-job-time", "50ms", "-worker-stop-timeout", "5s", "-shutdown-timeout", "10s")
	s := startJobServer(t, "run 1", bin, args)
	ids := append(s.enqueueHTTP(t, strconv.Itoa(jobs/2)), s.enqueueGRPC(t, jobs/2)...)
	slices.Sort(ids)
	if len(slices.Compact(slices.Clone(ids))) != jobs {
		t.Fatalf("enqueued %d jobs, want %d distinct ids: %v", len(ids), jobs, ids)
	}
	var runs []*jobServer
	inHand := 0
	for r := 1; ; r++ {
		runs = append(runs, s)
		if r > restarts {
			break
		}
		// In the middle of the queue: a few jobs more than the last run left.
		target := int64(r * jobs / (restarts + 1))
		s.waitStats(t, fmt.Sprintf("%d jobs done", target), func(st jobStats) bool { return st.Done >= target })
		s.stop(t)
		if s.logged(logMsg("worker: stopping: finishing the job in hand")) {
			inHand++
		}
		s = startJobServer(t, fmt.Sprintf("run %d", r+1), bin, args)
	}
	st := s.waitStats(t, "the queue empty", func(st jobStats) bool { return st.Queued == 0 && st.Running == 0 })
	s.stop(t)

	var perRun []int
	seen := make(map[int64]int)
	for _, p := range runs {
		done := p.jobsLogged("worker: done")
		perRun = append(perRun, len(done))
		for _, id := range done {
			seen[id]++
		}
	}
	t.Logf("%d jobs, %d SIGTERMs: done per run %v (%d of the SIGTERMs came with a job in hand, finished within the stop budget); stats %+v",
		jobs, restarts, perRun, inHand, st)
	if st.Done != jobs || st.Total != jobs || st.Completions != jobs || st.DoneTwice != 0 || st.Lost != 0 || st.OtherStatus != 0 {
		t.Errorf("stats %+v: want exactly %d jobs, all done, %d completions, 0 done twice, 0 lost", st, jobs, jobs)
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("job %d: the logs say it was done %d times, want once", id, seen[id])
		}
	}
	if len(seen) != jobs {
		t.Errorf("the logs name %d jobs done, want %d", len(seen), jobs)
	}
	for i, n := range perRun[:restarts] {
		if n == 0 {
			t.Errorf("run %d did no job before its SIGTERM: the test did not stop it in the middle", i+1)
		}
	}
}

// testJobInHandFinishes SIGTERMs the server while its worker is in a 2 s
// job, with a stop budget of 10 s: the worker takes nothing new, finishes the
// job during its stop, then the database closes; the job is done once, by
// that run, and the next run finds nothing to do.
func testJobInHandFinishes(t *testing.T, bin string, b jobBackend) {
	args := newJobScene(t, b).args("-worker-stop-timeout", "10s", "-shutdown-timeout", "20s")
	s := startJobServer(t, "run 1", bin, args)
	id := s.enqueueHTTP(t, `{"duration":"2s"}`)[0]
	next := s.enqueueHTTP(t, "1")[0] // queued behind it: must not be claimed once stopping
	s.waitLog(t, jobMsg("worker: claimed", id))
	s.stop(t)

	stopping := s.logIndex(logMsg("lifecycle: component stopping", "component", "worker"))
	done := s.logIndex(jobMsg("worker: done", id))
	if stopping < 0 || done < stopping {
		t.Errorf("job %d: done at log line %d, the worker told to stop at line %d: want it finished during the stop", id, done, stopping)
	}
	if !s.logged(jobMsg("worker: stopping: finishing the job in hand", id)) {
		t.Errorf("job %d: no log that the worker finished it while stopping", id)
	}
	if s.logged(jobMsg("worker: claimed", next)) {
		t.Errorf("job %d was claimed after the worker was told to stop", next)
	}

	s2 := startJobServer(t, "run 2", bin, args)
	st := s2.waitStats(t, "both jobs done", func(st jobStats) bool { return st.Done == 2 })
	s2.stop(t)
	t.Logf("stats %+v", st)
	if st.Completions != 2 || st.DoneTwice != 0 || st.Releases != 0 || st.Claims != 2 {
		t.Errorf("stats %+v: want 2 completions, 0 done twice, 0 releases, 2 claims", st)
	}
	if s2.logged(jobMsg("worker: done", id)) {
		t.Errorf("job %d was done again by the next run", id)
	}
}

// testStuckJobReleased SIGTERMs the server while its worker is in a 3 s job
// with a stop budget of 0.5 s: the worker releases the job back to the queue
// when the budget runs out, the process exits within its shutdown timeout
// with ExitTimeout (a deadline ran out), the database closing after the
// worker; the next run does the job, once.
func testStuckJobReleased(t *testing.T, bin string, b jobBackend) {
	const budget, shutdown = 500 * time.Millisecond, 5 * time.Second
	sc := newJobScene(t, b)
	s := startJobServer(t, "run 1", bin, sc.args("-worker-stop-timeout", budget.String(), "-shutdown-timeout", shutdown.String()))
	id := s.enqueueHTTP(t, `{"duration":"3s"}`)[0]
	s.waitLog(t, jobMsg("worker: claimed", id))
	sent := s.signal(t, syscall.SIGTERM)
	code, exited := s.wait(t, exitBound)
	took := exited.Sub(sent)
	t.Logf("SIGTERM with a 3 s job in hand and a %v stop budget → exit %d in %v; stop order %v", budget, code, took.Round(time.Millisecond), s.stopOrder())
	// The job was cut short at the worker's stop timeout: nothing is lost (it
	// is back in the queue), but a deadline ran out, and the exit code says so.
	if code != lifecycle.ExitTimeout {
		t.Errorf("exit status %d, want %d (ExitTimeout)", code, lifecycle.ExitTimeout)
	}
	if took >= shutdown {
		t.Errorf("exited %v after SIGTERM, want within the shutdown timeout %v", took, shutdown)
	}
	if !s.logged(jobMsg("worker: released the job in hand back to the queue", id)) {
		t.Errorf("job %d: no log that the worker released it", id)
	}
	if s.logged(jobMsg("worker: done", id)) {
		t.Errorf("job %d: done by the run that was stopped with it in hand", id)
	}
	released := s.logIndex(jobMsg("worker: released the job in hand back to the queue", id))
	closed := s.logIndex(logMsg("db: closed"))
	if released < 0 || closed < released {
		t.Errorf("the database closed at log line %d, the job was released at line %d: want the release first", closed, released)
	}

	// The next run, with the default stop budget.
	s2 := startJobServer(t, "run 2", bin, sc.args())
	st := s2.waitStats(t, "the job done", func(st jobStats) bool { return st.Done == 1 })
	s2.stop(t)
	t.Logf("stats %+v", st)
	if st.Completions != 1 || st.DoneTwice != 0 || st.Releases != 1 || st.Claims != 2 || st.Reclaims != 0 {
		t.Errorf("stats %+v: want 1 completion, 0 done twice, 1 release, 2 claims, 0 reclaims", st)
	}
	if !s2.logged(jobMsg("worker: done", id)) {
		t.Errorf("job %d: not done by the next run", id)
	}
}

// testKilledProcessLeaseExpires SIGKILLs the server while its worker is in a
// job, so that nothing is released: the job stays running, owned by the dead
// process, until its lease (1 s here) expires; the next run then claims it
// again and does it, once.
func testKilledProcessLeaseExpires(t *testing.T, bin string, b jobBackend) {
	sc := newJobScene(t, b)
	args := sc.args("-lease", "1s", "-poll", "100ms")
	s := startJobServer(t, "run 1", bin, args)
	id := s.enqueueHTTP(t, `{"duration":"2s"}`)[0]
	s.waitLog(t, jobMsg("worker: claimed", id))
	s.signal(t, syscall.SIGKILL)
	s.wait(t, exitBound)

	s2 := startJobServer(t, "run 2", bin, args)
	st := s2.waitStats(t, "the job done", func(st jobStats) bool { return st.Done == 1 })
	s2.stop(t)
	t.Logf("stats %+v", st)
	if st.Completions != 1 || st.DoneTwice != 0 || st.Reclaims != 1 || st.Claims != 2 || st.Releases != 0 {
		t.Errorf("stats %+v: want 1 completion, 0 done twice, 1 reclaim, 2 claims, 0 releases", st)
	}
	if !s2.logged(jobMsg("worker: done", id)) {
		t.Errorf("job %d: not done by the next run", id)
	}
}
