package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"
)

// Phase is the state of a Group. A Group goes through the phases in order,
// skipping those that do not apply (a start that fails goes from
// PhaseStarting to PhaseStopping), and never goes back.
type Phase int

// The phases of a Group.
const (
	PhaseIdle     Phase = iota // not started yet
	PhaseStarting              // components are starting, one by one
	PhaseRunning               // every component is ready; the Group is ready
	PhaseDraining              // not ready any more, still serving for the drain delay
	PhaseStopping              // components are stopping, in reverse order
	PhaseStopped               // every component has stopped or was abandoned
)

var phaseNames = [...]string{"idle", "starting", "running", "draining", "stopping", "stopped"}

func (p Phase) String() string {
	if p < 0 || int(p) >= len(phaseNames) {
		return "phase(" + strconv.Itoa(int(p)) + ")"
	}
	return phaseNames[p]
}

// verb names what a component was doing in the phase, for error messages.
func (p Phase) verb() string {
	switch p {
	case PhaseStarting:
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
// EventForced.
const (
	EventPhase     EventKind = iota + 1 // the Group entered Phase; Duration is how long the previous phase took
	EventShutdown                       // the shutdown began; Err is its cause
	EventForced                         // a repeated signal forced the shutdown
	EventStarting                       // the component's Start is about to be called
	EventReady                          // the component is ready; Duration is since its Start was called
	EventExited                         // the component's Start returned; Err is what it returned, nil if clean
	EventStopping                       // the component's Stop is about to be called
	EventStopped                        // the component's Stop returned; Err as returned, Duration since Stop was called
	EventAbandoned                      // the component's Stop, or its Start after Stop, did not return in time; Err says which
)

var kindNames = [...]string{"", "phase", "shutdown", "forced", "starting", "ready", "exited", "stopping", "stopped", "abandoned"}

func (k EventKind) String() string {
	if k <= 0 || int(k) >= len(kindNames) {
		return "event(" + strconv.Itoa(int(k)) + ")"
	}
	return kindNames[k]
}

// Event is one step of a Group's life, as passed to the function set with
// [WithObserver].
type Event struct {
	Kind      EventKind
	Phase     Phase  // the Group's phase when the event happened
	Component string // the component's name; empty for Group events
	Err       error
	Duration  time.Duration
	Time      time.Time
}

// emit reports ev to the observer and the logger. With neither listening, it
// costs no more than a check.
func (g *Group) emit(ev Event) {
	l := g.cfg.logger
	level := slog.LevelInfo
	if ev.Kind == EventAbandoned || ev.Kind == EventForced || (ev.Err != nil && ev.Kind != EventShutdown) {
		level = slog.LevelError
	}
	ctx := context.Background()
	logged := l.Enabled(ctx, level)
	if g.cfg.observer == nil && !logged {
		return
	}
	ev.Time = time.Now()
	if ev.Kind != EventPhase {
		ev.Phase = g.Phase()
	}
	if g.cfg.observer != nil {
		g.cfg.observer(ev)
	}
	if !logged {
		return
	}
	attrs := make([]slog.Attr, 0, 5)
	msg := "lifecycle: " + ev.Kind.String()
	switch {
	case ev.Kind == EventPhase:
		msg = "lifecycle: phase " + ev.Phase.String()
	case ev.Component != "":
		msg = "lifecycle: component " + ev.Kind.String()
	}
	if ev.Component != "" {
		attrs = append(attrs, slog.String("component", ev.Component))
	}
	attrs = append(attrs, slog.String("phase", ev.Phase.String()))
	if ev.Duration != 0 {
		attrs = append(attrs, slog.Duration("took", ev.Duration))
	}
	if ev.Err != nil {
		attrs = append(attrs, slog.String("err", ev.Err.Error()))
		var pe *PanicError
		if errors.As(ev.Err, &pe) {
			attrs = append(attrs, slog.String("stack", string(pe.Stack)))
		}
	}
	l.LogAttrs(ctx, level, msg, attrs...)
}

// clock returns the time now if anything listens to the Group's events, and
// the zero time otherwise, so that a quiet Group does not read the clock for
// durations nobody sees.
func (g *Group) clock() time.Time {
	if g.cfg.observer == nil && !g.cfg.logger.Enabled(context.Background(), slog.LevelError) {
		return time.Time{}
	}
	return time.Now()
}

// since is time.Since(t), or 0 for the zero time of a quiet clock.
func since(t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return time.Since(t)
}
