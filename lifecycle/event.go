package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Phase is the state of a Group. A Group goes through the phases in order,
// skipping those that do not apply (a start that fails goes from
// PhaseStarting to PhaseStopping), and never goes back.
type Phase int

// The phases of a Group.
const (
	PhaseIdle     Phase = iota // not started yet
	PhaseStarting              // components are starting, each once what it needs is ready
	PhaseRunning               // every component is ready; the Group is ready
	PhaseDraining              // not ready any more, still serving for the drain delay
	PhaseStopping              // components are stopping, each after what needs it
	PhaseStopped               // every component has stopped or was abandoned
)

var phaseNames = [...]string{"idle", "starting", "running", "draining", "stopping", "stopped"}

// String returns the phase's name: "idle", "starting", "running",
// "draining", "stopping" or "stopped".
func (p Phase) String() string {
	if p < 0 || int(p) >= len(phaseNames) {
		return "phase(" + strconv.Itoa(int(p)) + ")"
	}
	return phaseNames[p]
}

// verb names what a component was doing in the phase, for error messages.
func (p Phase) verb() string {
	switch p {
	case PhaseIdle, PhaseStarting:
		return "start"
	case PhaseRunning:
		return "run"
	case PhaseDraining:
		return "drain"
	default:
		return "stop"
	}
}

// EventKind says what an [Event] reports.
type EventKind int

// The kinds of events. Component is empty for EventPhase, EventShutdown and
// EventForced. Duration is always how long the thing that just ended took,
// and zero when nothing ended.
const (
	EventPhase      EventKind = iota + 1 // the Group entered Phase, leaving Prev, which lasted Duration; entering PhaseDraining, Deadline is when the drain delay ends
	EventShutdown                        // the shutdown began; Err is its cause, Deadline the end of the budget
	EventForced                          // a repeated signal (or a cancelled Stop context) forced the shutdown
	EventStarting                        // the component's Start is about to be called; Attempt counts its restarts
	EventReady                           // the component is ready; Duration since its Start was called
	EventExited                          // the component's Start returned; Err is what it returned, nil if clean
	EventDraining                        // the component's Drain is about to be called
	EventDrained                         // the component's Drain returned; Err is its panic, if any
	EventStopping                        // the component's Stop is about to be called; Deadline is when it is abandoned
	EventStopped                         // the component has stopped (Stop and Start returned); Err is Stop's error, Duration since Stop was called
	EventAbandoned                       // the component's Stop, Start after Stop, or Drain did not return in time; Err says which
	EventRestarting                      // the component failed (Err) and starts again after Delay; Attempt is the restart's number
	EventGaveUp                          // the optional component failed for good (Err); the Group runs on without it
)

var kindNames = [...]string{"", "phase", "shutdown", "forced", "starting", "ready", "exited", "draining", "drained", "stopping", "stopped", "abandoned", "restarting", "gave-up"}

// String returns the kind's name, as the logs print it ("starting",
// "ready", "gave-up", ...).
func (k EventKind) String() string {
	if k <= 0 || int(k) >= len(kindNames) {
		return "event(" + strconv.Itoa(int(k)) + ")"
	}
	return kindNames[k]
}

// Event is one step of a Group's life, as passed to the functions set with
// [WithObserver]. The fields that do not apply to a kind are zero.
type Event struct {
	Kind      EventKind
	Time      time.Time
	Phase     Phase  // the Group's phase when the event happened (for EventPhase, the phase entered)
	Prev      Phase  // EventPhase: the phase left
	Component string // the component's name; empty for Group events
	Err       error
	Duration  time.Duration // how long the thing that just ended took
	Deadline  time.Time     // when what begins must end (see the kinds)
	Attempt   int           // EventStarting, EventReady, EventRestarting: the restart's number (0: the first start)
	Delay     time.Duration // EventRestarting: the backoff before the restart
}

// emit reports ev to the observers and the logger, from the loop.
func (r *run) emit(ev Event) {
	ev.Time = time.Now()
	if ev.Kind != EventPhase {
		ev.Phase = r.phase
	}
	for _, o := range r.cfg.observers {
		o(ev)
	}
	r.log(ev)
}

// The log: INFO tells a person what the service does (two lines per
// component: ready and stopped, and one per phase), DEBUG every step, WARN
// and ERROR what went wrong.
func (r *run) log(ev Event) {
	l := r.cfg.logger
	level := slog.LevelDebug
	switch ev.Kind {
	case EventPhase, EventShutdown, EventReady, EventStopped, EventRestarting:
		level = slog.LevelInfo
	case EventGaveUp:
		level = slog.LevelWarn
	case EventAbandoned, EventForced:
		level = slog.LevelError
	case EventExited:
		if ev.Err != nil && r.cause == nil {
			level = slog.LevelError
		}
	}
	if ev.Kind == EventStopped && ev.Err != nil {
		level = slog.LevelWarn
	}
	if ev.Kind == EventPhase && (ev.Phase == PhaseStarting || ev.Phase == PhaseStopped) {
		level = slog.LevelDebug // Run's own first and last lines say it
	}
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 6)
	var msg string
	switch ev.Kind {
	case EventPhase:
		msg = "lifecycle: " + ev.Phase.String()
		switch ev.Phase {
		case PhaseDraining:
			if d := ev.Deadline.Sub(ev.Time); d > 0 {
				msg = "lifecycle: draining: readiness is off; serving on for the drain delay so that load balancers stop routing here"
				attrs = append(attrs, slog.Duration("for", d.Round(time.Millisecond)))
				if r.mode == modeRun && len(r.cfg.signals) > 0 {
					attrs = append(attrs, slog.String("hint", "a second signal (Ctrl-C) stops at once"))
				}
			} else {
				msg = "lifecycle: draining: readiness is off"
			}
		case PhaseRunning:
			msg = "lifecycle: running: every component is ready"
		}
		attrs = append(attrs, slog.Duration(ev.Prev.String(), ev.Duration))
	case EventShutdown:
		msg = "lifecycle: shutting down"
		attrs = append(attrs, slog.String("cause", ev.Err.Error()), slog.Duration("budget", ev.Deadline.Sub(ev.Time).Round(time.Millisecond)))
	case EventForced:
		msg = "lifecycle: shutdown forced: every stop context is cancelled"
	case EventRestarting:
		msg = "lifecycle: component failed; restarting"
	case EventGaveUp:
		msg = "lifecycle: optional component gave up; running on without it"
	default:
		msg = "lifecycle: component " + ev.Kind.String()
	}
	if ev.Component != "" {
		attrs = append(attrs, slog.String("component", ev.Component))
		if ev.Duration > 0 {
			attrs = append(attrs, slog.Duration("took", ev.Duration))
		}
	}
	if ev.Kind == EventRestarting {
		attrs = append(attrs, slog.Int("attempt", ev.Attempt), slog.Duration("delay", ev.Delay))
	}
	if ev.Kind == EventReady {
		if a := addrOf(r.unitNamed(ev.Component)); a != "" {
			attrs = append(attrs, slog.String("addr", a))
		}
	}
	if ev.Err != nil && ev.Kind != EventShutdown {
		attrs = append(attrs, slog.String("err", ev.Err.Error()))
		var ce *ComponentError
		if errors.As(ev.Err, &ce) && len(ce.Stacks) > 0 {
			attrs = append(attrs, slog.String("stacks", string(ce.Stacks)))
		}
		var pe *PanicError
		if errors.As(ev.Err, &pe) {
			attrs = append(attrs, slog.String("stack", string(pe.Stack)))
		}
	}
	l.LogAttrs(ctx, level, msg, attrs...)
}

// addrOf returns the address a component listens on, if it says: a method
// Addr returning a string or a net.Addr (as the HTTP and gRPC components do).
func addrOf(u *unit) string {
	if u == nil {
		return ""
	}
	switch a := u.c.(type) {
	case interface{ Addr() string }:
		return a.Addr()
	case interface{ Addr() net.Addr }:
		if addr := a.Addr(); addr != nil {
			return addr.String()
		}
	}
	return ""
}

func (r *run) unitNamed(name string) *unit {
	return r.g.byName[name]
}

// logStart is Run's first line.
func (r *run) logStart() {
	l := r.cfg.logger
	if !l.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	l.LogAttrs(context.Background(), slog.LevelInfo, "lifecycle: starting",
		slog.Int("components", len(r.units)),
		slog.Duration("shutdown_timeout", r.cfg.shutdownTimeout),
		slog.Duration("drain_delay", r.cfg.drainDelay))
}

// logProgress says, during a long shutdown, what is still stopping.
func (r *run) logProgress() {
	l := r.cfg.logger
	if !l.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	var waiting []string
	for _, u := range r.units {
		switch {
		case u.state == StateStopping && u.inStop:
			waiting = append(waiting, u.name+" (in Stop)")
		case u.state == StateStopping:
			waiting = append(waiting, u.name+" (Start not returned)")
		case u.inDrain:
			waiting = append(waiting, u.name+" (in Drain)")
		}
	}
	if len(waiting) == 0 {
		if r.phase == PhaseDraining && time.Until(r.drainUntil) >= time.Second {
			l.LogAttrs(context.Background(), slog.LevelInfo, "lifecycle: still draining",
				slog.Duration("left", time.Until(r.drainUntil).Round(time.Millisecond)))
		}
		return
	}
	l.LogAttrs(context.Background(), slog.LevelInfo, "lifecycle: still stopping",
		slog.String("waiting_for", strings.Join(waiting, ", ")),
		slog.Duration("budget_left", time.Until(r.deadline).Round(time.Millisecond)))
}

// logSummary is Run's last line: how long the shutdown took, how long each
// component took to stop, and the error, at WARN or ERROR when it is not nil.
func (r *run) logSummary(err error, began time.Time) {
	l := r.cfg.logger
	level := slog.LevelInfo
	switch ExitCode(err) {
	case ExitOK:
	case ExitFailure:
		level = slog.LevelError
	default:
		level = slog.LevelWarn
	}
	if !l.Enabled(context.Background(), level) {
		return
	}
	var b strings.Builder
	for _, u := range r.units {
		if u.stopAt.IsZero() {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(u.name)
		b.WriteByte('=')
		if u.state == StateAbandoned {
			b.WriteString("abandoned")
		} else {
			b.WriteString(u.stopTook.Round(time.Microsecond).String())
		}
	}
	attrs := []slog.Attr{slog.Duration("total", time.Since(began).Round(time.Microsecond))}
	if !r.shutdownAt.IsZero() {
		attrs = append(attrs, slog.Duration("shutdown", time.Since(r.shutdownAt).Round(time.Microsecond)))
	}
	if b.Len() > 0 {
		attrs = append(attrs, slog.String("stopped", b.String()))
	}
	attrs = append(attrs, slog.Int("exit_code", ExitCode(err)))
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	l.LogAttrs(context.Background(), level, "lifecycle: stopped", attrs...)
}
