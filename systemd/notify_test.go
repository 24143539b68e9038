package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

// sequence returns the messages but the watchdog pings, one string each,
// with the value of EXTEND_TIMEOUT_USEC replaced by "*".
func sequence(msgs []message) []string {
	var out []string
	for _, m := range msgs {
		if m.has("WATCHDOG=1") && len(m.lines) == 1 {
			continue
		}
		lines := slices.Clone(m.lines)
		for i, l := range lines {
			if strings.HasPrefix(l, "EXTEND_TIMEOUT_USEC=") {
				lines[i] = "EXTEND_TIMEOUT_USEC=*"
			}
		}
		out = append(out, strings.Join(lines, `\n`))
	}
	return out
}

func checkSequence(t *testing.T, msgs []message, want []string) {
	t.Helper()
	if have := sequence(msgs); !slices.Equal(have, want) {
		t.Errorf("messages to systemd:\nhave:\n  %s\nwant:\n  %s", strings.Join(have, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestNotifyRun runs a real Group whose Notifier talks to a unix datagram
// socket standing in for systemd, on a path and in the abstract namespace:
// a clean run (no drain delay) and one with a drain delay. It checks the
// messages and their order: READY=1 once running, STOPPING=1 when the
// shutdown begins, the extension of the stop timeout after it and again when
// the components stop, and the phase in STATUS=.
func TestNotifyRun(t *testing.T) {
	const drain = 300 * time.Millisecond
	for _, tc := range []struct {
		name     string
		abstract bool
		drain    time.Duration
	}{
		{"Path", false, 0},
		{"Abstract", true, 0},
		{"Drain", false, drain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sd := newFakeSystemd(t, tc.abstract)
			n, err := NewNotifier(WithGetenv(env("NOTIFY_SOCKET", sd.addr)))
			if err != nil {
				t.Fatal(err)
			}
			if !n.Enabled() || n.WatchdogInterval() != 0 {
				t.Fatalf("Enabled() = %v, WatchdogInterval() = %v; want true, 0", n.Enabled(), n.WatchdogInterval())
			}
			g := lifecycle.New(lifecycle.WithObserver(n.Observe), lifecycle.WithSignals(), lifecycle.WithLogger(nil),
				lifecycle.WithShutdownTimeout(10*time.Second), lifecycle.WithDrainDelay(tc.drain))
			g.Add("svc", newService())
			_ = g.ReadyHandler() // something routes by readiness: the drain delay applies
			ctx, cancel := context.WithCancel(context.Background())
			res := run(g, ctx)
			msgs := sd.until(t, with("READY=1"))
			cancel()
			if err := wait(t, res); err != nil {
				t.Fatalf("Run: %v", err)
			}
			msgs = append(msgs, sd.until(t, with("STATUS=stopped (context canceled)"))...)
			checkSequence(t, msgs, []string{
				`STATUS=starting`,
				`READY=1\nSTATUS=running`,
				`STOPPING=1\nSTATUS=shutting down (context canceled)`,
				`EXTEND_TIMEOUT_USEC=*`,
				`STATUS=draining (context canceled)`,
				`STATUS=stopping (context canceled)`,
				`EXTEND_TIMEOUT_USEC=*`,
				`STATUS=stopped (context canceled)`,
			})
			if tc.drain > 0 {
				var draining, stopping time.Time
				for _, m := range msgs {
					if m.has("STATUS=draining (context canceled)") {
						draining = m.at
					}
					if m.has("STATUS=stopping (context canceled)") {
						stopping = m.at
					}
				}
				if d := stopping.Sub(draining); d < tc.drain {
					t.Errorf("STATUS=stopping came %v after STATUS=draining; want at least the drain delay %v", d, tc.drain)
				}
			}
		})
	}
}

// TestNotifyForced forces a shutdown with a second signal while a component
// is stopping: STATUS= says it was forced, and no extension of the stop
// timeout is sent after that.
func TestNotifyForced(t *testing.T) {
	sd := newFakeSystemd(t, false)
	n, err := NewNotifier(WithGetenv(env("NOTIFY_SOCKET", sd.addr)))
	if err != nil {
		t.Fatal(err)
	}
	g := lifecycle.New(lifecycle.WithObserver(n.Observe), lifecycle.WithSignals(syscall.SIGUSR1), lifecycle.WithLogger(nil),
		lifecycle.WithShutdownTimeout(30*time.Second), lifecycle.WithDrainDelay(0))
	svc := newService()
	svc.untilDone = true // Stop waits for the second signal
	g.Add("svc", svc)
	res := run(g, context.Background())
	msgs := sd.until(t, with("READY=1"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, sd.until(t, withPrefix("STATUS=stopping"))...)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, res); !errors.Is(err, lifecycle.ErrForced) {
		t.Fatalf("Run: have %v, want ErrForced", err)
	}
	msgs = append(msgs, sd.until(t, withPrefix("STATUS=stopped"))...)
	cause := "(lifecycle: received signal " + syscall.SIGUSR1.String() + ")"
	checkSequence(t, msgs, []string{
		`STATUS=starting`,
		`READY=1\nSTATUS=running`,
		`STOPPING=1\nSTATUS=shutting down ` + cause,
		`EXTEND_TIMEOUT_USEC=*`,
		`STATUS=draining ` + cause,
		`STATUS=stopping ` + cause,
		`EXTEND_TIMEOUT_USEC=*`,
		`STATUS=stopping ` + cause + `; forced`,
		`STATUS=stopped ` + cause + `; forced`,
	})
}

// TestExtendTimeoutCoversBudget checks that the systemd stop timeout is
// extended, from the deadline the Group puts on its shutdown event (the
// Notifier is given no budget), to cover what is left of the shutdown budget, plus the grace
// within which Run returns after the deadline, from the moment systemd
// receives the message; and that the extension stays close to it (at most
// the margin more).
func TestExtendTimeoutCoversBudget(t *testing.T) {
	const budget = 10 * time.Second
	sd := newFakeSystemd(t, false)
	n, err := NewNotifier(WithGetenv(env("NOTIFY_SOCKET", sd.addr)))
	if err != nil {
		t.Fatal(err)
	}
	began := make(chan time.Time, 1)
	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithLogger(nil),
		lifecycle.WithShutdownTimeout(budget), lifecycle.WithDrainDelay(200*time.Millisecond),
		lifecycle.WithObserver(func(ev lifecycle.Event) {
			if ev.Kind == lifecycle.EventShutdown {
				began <- ev.Time // the deadline is at most this plus the budget
			}
			n.Observe(ev)
		}))
	g.Add("svc", newService())
	ctx, cancel := context.WithCancel(context.Background())
	res := run(g, ctx)
	sd.until(t, with("READY=1"))
	cancel()
	if err := wait(t, res); err != nil {
		t.Fatalf("Run: %v", err)
	}
	msgs := sd.until(t, withPrefix("STATUS=stopped"))
	deadline := (<-began).Add(budget)
	var extends []time.Duration
	for _, m := range msgs {
		v, ok := m.value("EXTEND_TIMEOUT_USEC")
		if !ok {
			continue
		}
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("EXTEND_TIMEOUT_USEC=%q: %v", v, err)
		}
		ext := time.Duration(us) * time.Microsecond
		extends = append(extends, ext)
		if covered, need := m.at.Add(ext), deadline.Add(runGrace); covered.Before(need) {
			t.Errorf("EXTEND_TIMEOUT_USEC=%s received at %v covers until %v, %v short of the deadline plus Run's grace",
				v, m.at.Format(time.StampMicro), covered.Format(time.StampMicro), need.Sub(covered))
		}
		if most := budget + runGrace + extendMargin; ext > most {
			t.Errorf("EXTEND_TIMEOUT_USEC=%s: %v is more than the budget, Run's grace and the margin (%v)", v, ext, most)
		}
	}
	if len(extends) != 2 || extends[1] > extends[0] {
		t.Errorf("extensions: have %v; want two, at the shutdown and at the stop, the second no longer", extends)
	}
	t.Logf("extensions of the stop timeout for a budget of %v: %v", budget, extends)
}

// TestWatchdogInterval measures the interval between the pings systemd
// receives when WATCHDOG_USEC asks for 200 ms: half of it, on average. It
// also checks that no ping comes after the Group has stopped.
func TestWatchdogInterval(t *testing.T) {
	const usec = 200_000
	sd := newFakeSystemd(t, true)
	n, err := NewNotifier(WithGetenv(env("NOTIFY_SOCKET", sd.addr, "WATCHDOG_USEC", strconv.Itoa(usec), "WATCHDOG_PID", strconv.Itoa(os.Getpid()))))
	if err != nil {
		t.Fatal(err)
	}
	want := usec * time.Microsecond / 2
	if have := n.WatchdogInterval(); have != want {
		t.Fatalf("WatchdogInterval() = %v, want %v", have, want)
	}
	g := lifecycle.New(lifecycle.WithObserver(n.Observe), lifecycle.WithSignals(), lifecycle.WithLogger(nil), lifecycle.WithDrainDelay(0))
	g.Add("svc", newService())
	ctx, cancel := context.WithCancel(context.Background())
	res := run(g, ctx)
	sd.until(t, with("READY=1"))
	const pings = 8
	var at []time.Time
	for len(at) < pings {
		m := sd.until(t, with("WATCHDOG=1"))
		at = append(at, m[len(m)-1].at)
	}
	cancel()
	if err := wait(t, res); err != nil {
		t.Fatalf("Run: %v", err)
	}
	mean := at[len(at)-1].Sub(at[0]) / time.Duration(len(at)-1)
	var gaps []time.Duration
	for i := 1; i < len(at); i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]).Round(time.Millisecond))
	}
	t.Logf("WATCHDOG_USEC=%d: pings every %v on average (gaps %v)", usec, mean.Round(100*time.Microsecond), gaps)
	if mean < want*8/10 || mean > 3*want {
		t.Errorf("mean interval between pings %v; want about %v (between %v and %v)", mean, want, want*8/10, 3*want)
	}
	// Nothing is sent after Run has returned; a last message of the test's
	// own marks the end of the stream.
	if err := n.Send("X_TEST=end"); err != nil {
		t.Fatal(err)
	}
	tail := sd.until(t, with("X_TEST=end"))
	stopped := slices.IndexFunc(tail, withPrefix("STATUS=stopped"))
	if stopped < 0 {
		t.Fatalf("no STATUS=stopped before the end:\n%s", sd.dump())
	}
	if i := slices.IndexFunc(tail[stopped:], with("WATCHDOG=1")); i >= 0 {
		t.Errorf("a ping came after STATUS=stopped:\n%s", sd.dump())
	}
}

// TestWatchdogStopsWhenAbandoned runs a real Group with a component whose
// Stop never returns. Once the Group abandons it, the Group is wedged: the
// watchdog must not ping any more, so that systemd would restart the
// process. The Group is held in that state (the observer of the abandon
// waits) for three watchdog ticks, which must all send nothing.
func TestWatchdogStopsWhenAbandoned(t *testing.T) {
	sd := newFakeSystemd(t, false)
	ticks := make(chan bool, 64)
	n, err := NewNotifier(
		WithGetenv(env("NOTIFY_SOCKET", sd.addr, "WATCHDOG_USEC", "100000")),
		withTick(func(pinged bool) {
			select {
			case ticks <- pinged:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	var after []bool // the ticks after the abandon
	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithLogger(nil),
		lifecycle.WithShutdownTimeout(300*time.Millisecond), lifecycle.WithDrainDelay(0),
		lifecycle.WithObserver(func(ev lifecycle.Event) {
			n.Observe(ev)
			if ev.Kind != lifecycle.EventAbandoned {
				return
			}
			for len(ticks) > 0 {
				<-ticks // decided before the abandon
			}
			timeout := time.After(waitBound)
			for len(after) < 3 {
				select {
				case p := <-ticks:
					after = append(after, p)
				case <-timeout:
					t.Errorf("no watchdog tick within %v", waitBound)
					return
				}
			}
		}))
	stuck := newService()
	stuck.hold = make(chan struct{})
	defer close(stuck.hold)
	g.Add("stuck", stuck)
	ctx, cancel := context.WithCancel(context.Background())
	res := run(g, ctx)
	msgs := sd.until(t, with("READY=1"))
	msgs = append(msgs, sd.until(t, with("WATCHDOG=1"))...) // live: pinging
	cancel()
	if err := wait(t, res); !errors.Is(err, lifecycle.ErrTimeout) {
		t.Fatalf("Run: have %v, want ErrTimeout (stuck abandoned)", err)
	}
	if err := n.Send("X_TEST=end"); err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, sd.until(t, with("X_TEST=end"))...)
	if slices.Contains(after, true) || len(after) < 3 {
		t.Errorf("watchdog ticks after the abandon (true: pinged): %v; want three, none pinged", after)
	}
	wedged := slices.IndexFunc(msgs, withPrefix("STATUS=stopping (context canceled); abandoned: stuck"))
	if wedged < 0 {
		t.Fatalf("no STATUS= names the abandoned component:\n%s", sd.dump())
	}
	if i := slices.IndexFunc(msgs[wedged:], with("WATCHDOG=1")); i >= 0 {
		t.Errorf("a ping came after the abandon:\n%s", sd.dump())
	}
	if i := slices.IndexFunc(msgs[wedged:], withPrefix("EXTEND_TIMEOUT_USEC=")); i >= 0 {
		t.Errorf("the stop timeout was extended after the abandon:\n%s", sd.dump())
	}
}

// TestWatchdogHealthCheck checks that no ping is sent while the health check
// fails, that STATUS= says why, that pings resume when it passes again, and
// that a check blocked on its context does not keep Run from returning.
func TestWatchdogHealthCheck(t *testing.T) {
	sd := newFakeSystemd(t, false)
	ticks := make(chan bool, 64)
	var failing, blocking atomic.Bool
	n, err := NewNotifier(
		WithGetenv(env("NOTIFY_SOCKET", sd.addr, "WATCHDOG_USEC", "100000")),
		WithHealthCheck(func(ctx context.Context) error {
			if blocking.Load() {
				<-ctx.Done()
				return ctx.Err()
			}
			if failing.Load() {
				return errors.New("database\nunreachable") // on two lines: STATUS= takes one
			}
			return nil
		}),
		withTick(func(pinged bool) {
			select {
			case ticks <- pinged:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	// nextTick returns the next tick's outcome.
	nextTick := func() bool {
		t.Helper()
		select {
		case p := <-ticks:
			return p
		case <-time.After(waitBound):
			t.Fatalf("no watchdog tick within %v", waitBound)
			return false
		}
	}
	g := lifecycle.New(lifecycle.WithObserver(n.Observe), lifecycle.WithSignals(), lifecycle.WithLogger(nil), lifecycle.WithDrainDelay(0))
	g.Add("svc", newService())
	ctx, cancel := context.WithCancel(context.Background())
	res := run(g, ctx)
	sd.until(t, with("READY=1"))

	// A check begun before the failure may still ping, once.
	failing.Store(true)
	for i := 0; nextTick(); i++ {
		if i == 2 {
			t.Fatalf("the watchdog keeps pinging while the health check fails")
		}
	}
	if nextTick() {
		t.Errorf("the watchdog pinged while the health check failed")
	}
	sd.until(t, with("STATUS=running; unhealthy: database unreachable"))

	failing.Store(false)
	for i := 0; !nextTick(); i++ {
		if i == 2 {
			t.Fatalf("the watchdog does not ping again once the health check passes")
		}
	}
	for _, m := range sd.until(t, with("STATUS=running")) {
		if m.has("WATCHDOG=1") {
			t.Errorf("a ping while the health check failed:\n%s", sd.dump())
		}
	}
	sd.until(t, with("WATCHDOG=1"))

	blocking.Store(true)
	cancel()
	if err := wait(t, res); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestNotifyOff checks that without NOTIFY_SOCKET nothing happens: no
// watchdog goroutine (its ticks would show), Send does nothing, and the Group
// runs as without the Notifier.
func TestNotifyOff(t *testing.T) {
	var ticked atomic.Int32
	getenv := env("WATCHDOG_USEC", "2000", "WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := NewNotifier(WithGetenv(getenv), withTick(func(bool) { ticked.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	if n.Enabled() || n.WatchdogInterval() != 0 {
		t.Errorf("Enabled() = %v, WatchdogInterval() = %v; want false, 0", n.Enabled(), n.WatchdogInterval())
	}
	if err := n.Send("READY=1"); err != nil {
		t.Errorf("Send without NOTIFY_SOCKET: %v", err)
	}
	g := lifecycle.New(lifecycle.WithObserver(n.Observe), lifecycle.WithSignals(), lifecycle.WithLogger(nil), lifecycle.WithDrainDelay(0))
	g.Add("svc", newService())
	ctx, cancel := context.WithCancel(context.Background())
	res := run(g, ctx)
	<-g.Ready()
	cancel()
	if err := wait(t, res); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if c := ticked.Load(); c != 0 {
		t.Errorf("the watchdog ticked %d times without NOTIFY_SOCKET", c)
	}
	// The one-line form, with a malformed environment: it says so, and the
	// Group runs without it.
	var logs bytes.Buffer
	bad := env("NOTIFY_SOCKET", "notify")
	g = lifecycle.New(Notify(WithGetenv(bad), WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))),
		lifecycle.WithSignals(), lifecycle.WithLogger(nil), lifecycle.WithDrainDelay(0))
	g.Add("svc", newService())
	ctx, cancel = context.WithCancel(context.Background())
	res = run(g, ctx)
	<-g.Ready()
	cancel()
	if err := wait(t, res); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(logs.String(), `not notifying systemd" err="systemd: NOTIFY_SOCKET=\"notify\" is neither`) {
		t.Errorf("Notify with a malformed NOTIFY_SOCKET logged:\n%s", logs.String())
	}
}

// TestNotifySendFails checks that a notify socket nobody listens on makes
// Send return the error and the Observer log one warning (not one per
// message), and that the Group runs on.
func TestNotifySendFails(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	sock := t.TempDir() + "/nobody"
	n, err := NewNotifier(WithGetenv(env("NOTIFY_SOCKET", sock)), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Send("READY=1"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Send to a socket that does not exist: have %v, want ENOENT", err)
	}
	g := lifecycle.New(lifecycle.WithObserver(n.Observe), lifecycle.WithSignals(), lifecycle.WithLogger(nil), lifecycle.WithDrainDelay(0))
	g.Add("svc", newService())
	ctx, cancel := context.WithCancel(context.Background())
	res := run(g, ctx)
	<-g.Ready()
	cancel()
	if err := wait(t, res); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if c := strings.Count(logs.String(), "cannot notify systemd"); c != 1 || !strings.Contains(logs.String(), sock) {
		t.Errorf("have %d warnings, want 1 naming the socket:\n%s", c, logs.String())
	}
}

// TestNotifierEnv checks the reading of NOTIFY_SOCKET, WATCHDOG_USEC and
// WATCHDOG_PID, and the options: a clear error for what is malformed.
func TestNotifierEnv(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	other := strconv.Itoa(os.Getpid() + 1)
	long := "/" + strings.Repeat("x", 200)
	for _, tc := range []struct {
		name     string
		opts     []Option
		env      []string
		enabled  bool
		interval time.Duration
		err      string // in the error; "" for none
	}{
		{"Unset", nil, nil, false, 0, ""},
		{"WatchdogWithoutSocket", nil, []string{"WATCHDOG_USEC", "1000000"}, false, 0, ""},
		{"Path", nil, []string{"NOTIFY_SOCKET", "/run/systemd/notify"}, true, 0, ""},
		{"Abstract", nil, []string{"NOTIFY_SOCKET", "@/org/freedesktop/systemd1/notify/1"}, true, 0, ""},
		{"Relative", nil, []string{"NOTIFY_SOCKET", "run/notify"}, false, 0, `NOTIFY_SOCKET="run/notify" is neither an absolute path nor an abstract socket`},
		{"Vsock", nil, []string{"NOTIFY_SOCKET", "vsock:2:1234"}, false, 0, `NOTIFY_SOCKET="vsock:2:1234" is neither`},
		{"AtOnly", nil, []string{"NOTIFY_SOCKET", "@"}, false, 0, `NOTIFY_SOCKET="@" names no socket`},
		{"TooLong", nil, []string{"NOTIFY_SOCKET", long}, false, 0, "is longer than a socket address can be"},
		{"Watchdog", nil, []string{"NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "30000000"}, true, 15 * time.Second, ""},
		{"WatchdogThisPID", nil, []string{"NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "30000000", "WATCHDOG_PID", self}, true, 15 * time.Second, ""},
		{"WatchdogOtherPID", nil, []string{"NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "30000000", "WATCHDOG_PID", other}, true, 0, ""},
		{"WatchdogBadPID", nil, []string{"NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "30000000", "WATCHDOG_PID", "main"}, false, 0, `WATCHDOG_PID="main" is not a process id`},
		{"WatchdogZero", nil, []string{"NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "0"}, false, 0, `WATCHDOG_USEC="0" is not a positive number of microseconds`},
		{"WatchdogNegative", nil, []string{"NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "-5"}, false, 0, `WATCHDOG_USEC="-5" is not`},
		{"WatchdogSeconds", nil, []string{"NOTIFY_SOCKET", "/n", "WATCHDOG_USEC", "30s"}, false, 0, `WATCHDOG_USEC="30s" is not`},
		{"ZeroBudget", []Option{WithShutdownTimeout(0)}, nil, false, 0, "shutdown timeout 0s is not positive"},
		{"NilGetenv", []Option{WithGetenv(nil)}, nil, false, 0, "nil getenv"},
		{"NilOption", []Option{nil}, nil, false, 0, "nil Option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]Option{WithGetenv(env(tc.env...))}, tc.opts...)
			n, err := NewNotifier(opts...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error: have %v, want one that says %q", err, tc.err)
				}
				if n != nil {
					t.Errorf("a Notifier with the error")
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if n.Enabled() != tc.enabled || n.WatchdogInterval() != tc.interval {
				t.Errorf("Enabled() = %v, WatchdogInterval() = %v; want %v, %v", n.Enabled(), n.WatchdogInterval(), tc.enabled, tc.interval)
			}
		})
	}
}

// TestStatusOneLine checks that a cause on several lines, or a long one,
// makes one bounded STATUS= line: a newline would start another assignment.
func TestStatusOneLine(t *testing.T) {
	sd := newFakeSystemd(t, false)
	n, err := NewNotifier(WithGetenv(env("NOTIFY_SOCKET", sd.addr)))
	if err != nil {
		t.Fatal(err)
	}
	n.Observe(lifecycle.Event{Kind: lifecycle.EventPhase, Phase: lifecycle.PhaseStarting})
	n.Observe(lifecycle.Event{Kind: lifecycle.EventShutdown, Err: fmt.Errorf("first\nsecond\n%s", strings.Repeat("é", 300))})
	m := sd.until(t, with("STOPPING=1"))
	last := m[len(m)-1]
	if len(last.lines) != 2 {
		t.Fatalf("have %d lines, want STOPPING=1 and STATUS=: %s", len(last.lines), last)
	}
	status, _ := last.value("STATUS")
	if !strings.HasPrefix(status, "shutting down (first second éé") || len(status) > maxStatus || !strings.HasSuffix(status, "...)") {
		t.Errorf("STATUS=%s", status)
	}
	n.Observe(lifecycle.Event{Kind: lifecycle.EventPhase, Phase: lifecycle.PhaseStopped})
	sd.until(t, withPrefix("STATUS=stopped"))
}

// TestExtendTimeoutFallback feeds a Notifier shutdown events made by hand,
// without a deadline: with WithShutdownTimeout the extension covers that
// budget from the event's time; without it, none is sent (systemd's
// TimeoutStopSec applies).
func TestExtendTimeoutFallback(t *testing.T) {
	const budget = 30 * time.Second
	for _, tc := range []struct {
		name string
		opts []Option
		want bool
	}{
		{"WithShutdownTimeout", []Option{WithShutdownTimeout(budget)}, true},
		{"NoBudget", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sd := newFakeSystemd(t, false)
			n, err := NewNotifier(append([]Option{WithGetenv(env("NOTIFY_SOCKET", sd.addr))}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			n.Observe(lifecycle.Event{Kind: lifecycle.EventShutdown, Time: at, Phase: lifecycle.PhaseRunning, Err: errors.New("by hand")})
			n.Observe(lifecycle.Event{Kind: lifecycle.EventPhase, Time: time.Now(), Phase: lifecycle.PhaseStopped})
			msgs := sd.until(t, withPrefix("STATUS=stopped"))
			var ext []time.Duration
			for _, m := range msgs {
				if v, ok := m.value("EXTEND_TIMEOUT_USEC"); ok {
					us, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						t.Fatalf("EXTEND_TIMEOUT_USEC=%q: %v", v, err)
					}
					ext = append(ext, time.Duration(us)*time.Microsecond)
					if covered, need := m.at.Add(time.Duration(us)*time.Microsecond), at.Add(budget+runGrace); covered.Before(need) {
						t.Errorf("EXTEND_TIMEOUT_USEC=%s covers until %v, %v short of the event's time + the budget + Run's grace", v, covered, need.Sub(covered))
					}
				}
			}
			if tc.want && len(ext) != 1 || !tc.want && len(ext) != 0 {
				t.Errorf("extensions %v; want one: %v", ext, tc.want)
			}
		})
	}
}

// TestNotifySupervision checks STATUS= while a supervised, optional component
// fails: "restarting" from its failure until it is ready again, and
// "degraded, gave up" once it failed more often than its policy allows, while
// the Group runs on.
func TestNotifySupervision(t *testing.T) {
	sd := newFakeSystemd(t, false)
	n, err := NewNotifier(WithGetenv(env("NOTIFY_SOCKET", sd.addr)))
	if err != nil {
		t.Fatal(err)
	}
	g := lifecycle.New(lifecycle.WithObserver(n.Observe), lifecycle.WithSignals(), lifecycle.WithLogger(nil), lifecycle.WithDrainDelay(0))
	g.Add("svc", newService())
	fail := make(chan struct{})
	started := make(chan struct{}, 10)
	g.Add("flaky", lifecycle.Func(func(ctx context.Context) error {
		started <- struct{}{}
		select {
		case <-fail:
			return errors.New("boom")
		case <-ctx.Done():
			return nil
		}
	}), lifecycle.Optional(), lifecycle.Restart(lifecycle.RestartPolicy{MaxRestarts: 1, Window: time.Hour}))
	ctx, cancel := context.WithCancel(context.Background())
	res := run(g, ctx)
	msgs := sd.until(t, with("READY=1"))
	<-started
	fail <- struct{}{}
	msgs = append(msgs, sd.until(t, with("STATUS=running"))...) // ready again
	<-started
	fail <- struct{}{}
	msgs = append(msgs, sd.until(t, withPrefix("STATUS=running; degraded"))...)
	cancel()
	if err := wait(t, res); err != nil {
		t.Fatalf("Run: %v", err)
	}
	msgs = append(msgs, sd.until(t, withPrefix("STATUS=stopped"))...)
	checkSequence(t, msgs, []string{
		`STATUS=starting`,
		`READY=1\nSTATUS=running`,
		`STATUS=running; restarting: flaky`,
		`STATUS=running`,
		`STATUS=running; degraded, gave up: flaky`,
		`STOPPING=1\nSTATUS=shutting down (context canceled); degraded, gave up: flaky`,
		`EXTEND_TIMEOUT_USEC=*`,
		`STATUS=draining (context canceled); degraded, gave up: flaky`,
		`STATUS=stopping (context canceled); degraded, gave up: flaky`,
		`EXTEND_TIMEOUT_USEC=*`,
		`STATUS=stopped (context canceled); degraded, gave up: flaky`,
	})
}
