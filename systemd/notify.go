package systemd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/graceful-go/graceful/lifecycle"
)

// runGrace is a margin past the shutdown deadline: lifecycle's Run returns
// within the deadline, and this covers the scheduling of its last steps on a
// loaded machine.
const runGrace = 200 * time.Millisecond

// extendMargin is added to the rest of the budget in EXTEND_TIMEOUT_USEC: the
// time the program takes, after Run has returned, to log and exit.
const extendMargin = time.Second

// maxStatus bounds the length of a STATUS= text (systemctl shows one line).
const maxStatus = 400

// Notifier speaks systemd's notify protocol (sd_notify) for one
// [lifecycle.Group], from the Group's events: pass [Notifier.Observe] to
// lifecycle.WithObserver, or use [Notify]. What it sends, each as a datagram
// to $NOTIFY_SOCKET:
//
//   - STATUS=starting when the Group starts;
//   - READY=1 (and STATUS=running) when every component is ready;
//   - STOPPING=1 when the shutdown begins, then EXTEND_TIMEOUT_USEC set to
//     the rest of the shutdown budget (until the Deadline of the
//     lifecycle.EventShutdown event; Run returns within it), plus 200 ms of
//     scheduling margin, plus a margin of 1 s for the program to exit,
//     so that systemd waits for a shutdown that keeps to its budget even when
//     TimeoutStopSec is shorter; again when the Group begins to stop its
//     components;
//   - STATUS= with the phase, what began the shutdown, and what went wrong:
//     components restarting or given up (lifecycle.Restart, lifecycle.Optional:
//     the Group runs degraded), a forced shutdown, components abandoned, a
//     failing health check;
//   - WATCHDOG=1 every half of $WATCHDOG_USEC, when systemd asks for it
//     (WatchdogSec=, and $WATCHDOG_PID, if set, is this process), from the
//     moment the Group starts, only while it is live: never again once a
//     component was abandoned (the Group is wedged) or the Group has stopped,
//     and not while the health check of [WithHealthCheck] fails. systemd then
//     restarts a process that no longer pings.
//
// When $NOTIFY_SOCKET is unset the Notifier does nothing: it sends nothing
// and starts no goroutine. Otherwise the only goroutine it starts is the
// watchdog's, when the Group enters PhaseStarting; it ends before Observe
// returns from the event of PhaseStopped, so that nothing of it is left when
// Run returns.
//
// A Notifier serves one Group, run once; it is meant for the Group that owns
// the process (the one whose Run main calls). Its methods are safe for
// concurrent use. What it fails to send is logged (see [WithLogger]), never
// returned: the Group's run does not depend on systemd hearing it.
type Notifier struct {
	cfg      config
	addr     *net.UnixAddr // nil when NOTIFY_SOCKET is unset: the Notifier does nothing
	interval time.Duration // between two WATCHDOG=1; 0 without a watchdog

	mu         sync.Mutex // held while a datagram is sent, so that they go out in order
	phase      lifecycle.Phase
	shutdown   bool      // the shutdown has begun
	cause      string    // what began it, on one line
	deadline   time.Time // the shutdown deadline; zero when unknown
	forced     bool
	abandoned  []string
	restarting []string // components failed and waiting to be ready again
	gaveUp     []string // optional components that failed for good
	unhealthy  string   // the health check's error, while it fails
	wedged     bool     // no more pings: a component was abandoned or the Group stopped
	failing    bool     // the last send failed (logged once until one succeeds)
	wd         watchdogState
	wdStop     context.CancelFunc
	wdDone     chan struct{}
}

type watchdogState int

const (
	watchdogIdle    watchdogState = iota
	watchdogRunning               // its goroutine runs
	watchdogEnded                 // it ran and ended, or will never run
)

// NewNotifier returns a Notifier configured from the environment
// ($NOTIFY_SOCKET, $WATCHDOG_USEC, $WATCHDOG_PID) and opts. It returns an
// error, and no Notifier, when an option is invalid or the environment is
// malformed: a NOTIFY_SOCKET that is neither an absolute path nor an abstract
// socket name ("@..."), or a WATCHDOG_USEC or WATCHDOG_PID that is not a
// positive number. An unset NOTIFY_SOCKET is not an error: the Notifier then
// does nothing. NewNotifier does not block and sends nothing.
func NewNotifier(opts ...Option) (*Notifier, error) {
	c := newConfig(opts)
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	n := &Notifier{cfg: c}
	sock := c.getenv("NOTIFY_SOCKET")
	if sock == "" {
		n.wd = watchdogEnded
		return n, nil
	}
	addr, err := notifyAddr(sock)
	if err != nil {
		return nil, err
	}
	interval, err := watchdogInterval(c.getenv("WATCHDOG_USEC"), c.getenv("WATCHDOG_PID"), c.pid)
	if err != nil {
		return nil, err
	}
	n.addr, n.interval = addr, interval
	if interval == 0 {
		n.wd = watchdogEnded
	}
	return n, nil
}

// Notify returns a lifecycle option that makes the Group notify systemd: the
// one line that enables the notify protocol in a program,
//
//	g := lifecycle.New(systemd.Notify(), lifecycle.WithShutdownTimeout(10*time.Second))
//
// It is lifecycle.WithObserver with the Observe method of a [NewNotifier].
// When the environment is malformed, it logs the error (on the logger of
// [WithLogger]) and the Group runs without notifying; call NewNotifier to get
// the error instead. Notify does not block.
func Notify(opts ...Option) lifecycle.Option {
	n, err := NewNotifier(opts...)
	if err != nil {
		c := newConfig(opts)
		c.logger.Error("systemd: not notifying systemd", "err", err)
		n = &Notifier{cfg: c, wd: watchdogEnded}
	}
	return lifecycle.WithObserver(n.Observe)
}

// Enabled reports whether the Notifier sends anything: whether NOTIFY_SOCKET
// was set.
func (n *Notifier) Enabled() bool { return n.addr != nil }

// WatchdogInterval returns the time between two WATCHDOG=1 pings: half of
// WATCHDOG_USEC. It returns 0 when systemd asks for no watchdog, or asks it of
// another process (WATCHDOG_PID), or the Notifier is not enabled.
func (n *Notifier) WatchdogInterval() time.Duration { return n.interval }

// Send sends state to systemd as one datagram, for the messages the Notifier
// does not send itself (RELOADING=1, a STATUS= of the program's own, ...):
// newline-separated VARIABLE=value assignments, as sd_notify takes them. It
// returns nil without sending when the Notifier is not enabled, and the error
// of the send otherwise. It blocks at most 1 s, when systemd does not read its
// socket.
func (n *Notifier) Send(state string) error {
	if n.addr == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.write(state)
}

// Observe updates the Notifier with an event of its Group and sends what
// systemd must hear of it. Pass it to lifecycle.WithObserver. It returns as
// soon as the datagrams are sent; on the event of PhaseStopped it also waits
// for the watchdog's goroutine to end (and for the health check in progress,
// if any, to return).
func (n *Notifier) Observe(ev lifecycle.Event) {
	if n.addr == nil {
		return
	}
	switch ev.Kind {
	case lifecycle.EventPhase:
		n.phaseEntered(ev.Phase)
	case lifecycle.EventShutdown:
		n.shutdownBegan(ev)
	case lifecycle.EventForced:
		n.mu.Lock()
		n.forced = true
		n.sendLocked("STATUS=" + n.statusLocked())
		n.mu.Unlock()
	case lifecycle.EventAbandoned:
		n.mu.Lock()
		n.wedged = true
		n.abandoned = append(n.abandoned, ev.Component)
		n.sendLocked("STATUS=" + n.statusLocked())
		n.mu.Unlock()
	case lifecycle.EventRestarting:
		n.mu.Lock()
		if !slices.Contains(n.restarting, ev.Component) {
			n.restarting = append(n.restarting, ev.Component)
			n.sendLocked("STATUS=" + n.statusLocked())
		}
		n.mu.Unlock()
	case lifecycle.EventReady:
		n.mu.Lock()
		if i := slices.Index(n.restarting, ev.Component); i >= 0 {
			n.restarting = slices.Delete(n.restarting, i, i+1)
			n.sendLocked("STATUS=" + n.statusLocked())
		}
		n.mu.Unlock()
	case lifecycle.EventGaveUp:
		n.mu.Lock()
		if i := slices.Index(n.restarting, ev.Component); i >= 0 {
			n.restarting = slices.Delete(n.restarting, i, i+1)
		}
		n.gaveUp = append(n.gaveUp, ev.Component)
		n.sendLocked("STATUS=" + n.statusLocked())
		n.mu.Unlock()
	}
}

func (n *Notifier) phaseEntered(p lifecycle.Phase) {
	if p == lifecycle.PhaseStopped {
		n.stopWatchdog()
	}
	n.mu.Lock()
	if p <= n.phase {
		n.mu.Unlock()
		return // a Notifier serves one run of one Group
	}
	n.phase = p
	switch p {
	case lifecycle.PhaseRunning:
		n.sendLocked("READY=1\nSTATUS=" + n.statusLocked())
	case lifecycle.PhaseStopping:
		n.sendLocked("STATUS=" + n.statusLocked())
		n.extendLocked()
	case lifecycle.PhaseStopped:
		n.wedged = true
		n.sendLocked("STATUS=" + n.statusLocked())
	default:
		n.sendLocked("STATUS=" + n.statusLocked())
	}
	n.mu.Unlock()
	if p == lifecycle.PhaseStarting {
		n.startWatchdog()
	}
}

// shutdownBegan sends STOPPING=1, and the extension of systemd's stop timeout
// in a datagram of its own, after it: systemd arms its stop timer on
// STOPPING=1, and the extension must come after that.
func (n *Notifier) shutdownBegan(ev lifecycle.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.shutdown {
		return
	}
	n.shutdown = true
	n.cause = oneLine(ev.Err)
	n.deadline = eventDeadline(ev)
	if n.deadline.IsZero() && n.cfg.budget > 0 {
		at := ev.Time
		if at.IsZero() {
			at = time.Now()
		}
		n.deadline = at.Add(n.cfg.budget)
	}
	n.sendLocked("STOPPING=1\nSTATUS=" + n.statusLocked())
	n.extendLocked()
}

// extendLocked asks systemd to wait until the shutdown deadline, plus the
// scheduling margin, plus the margin for the exit. It sends nothing when the deadline is
// unknown or the Group is wedged or forced: then systemd's own stop timeout
// applies.
func (n *Notifier) extendLocked() {
	if n.deadline.IsZero() || n.wedged || n.forced {
		return
	}
	d := max(time.Until(n.deadline), 0) + runGrace + extendMargin
	n.sendLocked("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10))
}

// statusLocked is the STATUS= text: the phase, what began the shutdown, and
// what went wrong.
func (n *Notifier) statusLocked() string {
	var b strings.Builder
	switch {
	case n.shutdown && n.phase < lifecycle.PhaseDraining:
		b.WriteString("shutting down")
	default:
		b.WriteString(n.phase.String())
	}
	if n.shutdown && n.cause != "" {
		b.WriteString(" (" + n.cause + ")")
	}
	if len(n.restarting) > 0 {
		b.WriteString("; restarting: " + strings.Join(n.restarting, ", "))
	}
	if len(n.gaveUp) > 0 {
		b.WriteString("; degraded, gave up: " + strings.Join(n.gaveUp, ", "))
	}
	if n.forced {
		b.WriteString("; forced")
	}
	if len(n.abandoned) > 0 {
		b.WriteString("; abandoned: " + strings.Join(n.abandoned, ", "))
	}
	if n.unhealthy != "" {
		b.WriteString("; unhealthy: " + n.unhealthy)
	}
	return truncate(b.String(), maxStatus)
}

// sendLocked sends msg and logs a failure, once until a send succeeds again.
func (n *Notifier) sendLocked(msg string) {
	err := n.write(msg)
	switch {
	case err != nil && !n.failing:
		n.failing = true
		n.cfg.logger.Warn("systemd: cannot notify systemd", "socket", n.addr.Name, "err", err)
	case err == nil && n.failing:
		n.failing = false
		n.cfg.logger.Info("systemd: notifying systemd again", "socket", n.addr.Name)
	}
}

// write sends msg in one datagram. Like sd_notify, it opens a socket for it:
// nothing stays open between two messages.
func (n *Notifier) write(msg string) error {
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(n.cfg.sendTTL)); err != nil {
		return err
	}
	_, err = c.Write([]byte(msg))
	return err
}

// startWatchdog starts the watchdog's goroutine, once, if systemd asked for
// pings.
func (n *Notifier) startWatchdog() {
	n.mu.Lock()
	if n.wd != watchdogIdle {
		n.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.wd, n.wdStop, n.wdDone = watchdogRunning, cancel, done
	n.mu.Unlock()
	go n.watch(ctx, done)
}

// stopWatchdog ends the watchdog's goroutine, if it runs, and waits for it.
func (n *Notifier) stopWatchdog() {
	n.mu.Lock()
	running := n.wd == watchdogRunning
	stop, done := n.wdStop, n.wdDone
	n.wd = watchdogEnded
	n.mu.Unlock()
	if running {
		stop()
		<-done
	}
}

// watch pings systemd at once, then at every interval, until ctx is done.
func (n *Notifier) watch(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(n.interval)
	defer t.Stop()
	for {
		n.ping(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ping sends WATCHDOG=1 if the Group is live and healthy.
func (n *Notifier) ping(ctx context.Context) {
	var herr error
	if check := n.cfg.health; check != nil {
		herr = runCheck(ctx, check)
	}
	if ctx.Err() != nil {
		return // the Group has stopped
	}
	n.mu.Lock()
	unhealthy := ""
	if herr != nil {
		unhealthy = oneLine(herr)
		if unhealthy == "" {
			unhealthy = "health check failed"
		}
	}
	if unhealthy != n.unhealthy {
		n.unhealthy = unhealthy
		n.sendLocked("STATUS=" + n.statusLocked())
	}
	pinged := !n.wedged && herr == nil
	if pinged {
		n.sendLocked("WATCHDOG=1")
	}
	if n.cfg.tick != nil {
		n.cfg.tick(pinged)
	}
	n.mu.Unlock()
}

// runCheck calls check and turns a panic into an error.
func runCheck(ctx context.Context, check func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("health check panicked: %v", v)
		}
	}()
	return check(ctx)
}

// notifyAddr is the address of NOTIFY_SOCKET: an absolute path, or a name in
// the abstract namespace written with a leading "@".
func notifyAddr(sock string) (*net.UnixAddr, error) {
	switch {
	case sock[0] != '/' && sock[0] != '@':
		return nil, fmt.Errorf("systemd: NOTIFY_SOCKET=%q is neither an absolute path nor an abstract socket name (\"@...\")", sock)
	case len(sock) < 2:
		return nil, fmt.Errorf("systemd: NOTIFY_SOCKET=%q names no socket", sock)
	case len(sock) > maxSocketPath:
		return nil, fmt.Errorf("systemd: NOTIFY_SOCKET=%q is longer than a socket address can be (%d bytes)", sock, maxSocketPath)
	}
	return &net.UnixAddr{Name: sock, Net: "unixgram"}, nil
}

// maxSocketPath is the room for a name in a sockaddr_un on Linux (sun_path,
// 108 bytes, of which the last is the terminating zero of a path).
const maxSocketPath = 107

// watchdogInterval is the time between two pings that WATCHDOG_USEC asks
// for: half of it, so that a ping delayed by up to an interval is still in
// time. It is 0 when WATCHDOG_USEC is unset or WATCHDOG_PID names another
// process.
func watchdogInterval(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, fmt.Errorf("systemd: WATCHDOG_USEC=%q is not a positive number of microseconds", usec)
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("systemd: WATCHDOG_PID=%q is not a process id", pid)
		}
		if p != self {
			return 0, nil // the watchdog is another process's
		}
	}
	return max(time.Duration(min(u, uint64(1<<62)/1000))*time.Microsecond/2, 1), nil
}

// oneLine is err's message on one line, bounded, for STATUS=.
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	s := strings.Join(strings.Fields(err.Error()), " ")
	return truncate(s, maxStatus/2)
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
