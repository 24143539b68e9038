package lifecycletest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/graceful-go/graceful/lifecycle"
)

// Recorder records the events of a Group in the order the Group reported
// them, for a test to wait on and to check. Pass its Observe method to
// [lifecycle.WithObserver] ([New] does). A zero Recorder is ready to use; it
// is safe for concurrent use.
//
// The assertion methods (StoppedBefore, NothingAbandoned, ...) report a
// failure with tb.Errorf, in want/have form followed by every event recorded,
// and return whether the check passed, so that a test can stop with
// `if !rec.X(t, ...) { t.FailNow() }` where nothing after makes sense. Call
// them once Run has returned: they check what has been recorded so far.
type Recorder struct {
	mu      sync.Mutex
	events  []lifecycle.Event
	waiters []waiter
}

type waiter struct {
	match func(lifecycle.Event) bool
	ch    chan struct{}
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// Observe records ev and wakes the waiters it matches. It is the observer
// function for [lifecycle.WithObserver]; it does not block.
func (r *Recorder) Observe(ev lifecycle.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	kept := r.waiters[:0]
	for _, w := range r.waiters {
		if w.match(ev) {
			close(w.ch)
			continue
		}
		kept = append(kept, w)
	}
	clear(r.waiters[len(kept):])
	r.waiters = kept
}

// Until returns a channel that is closed once an event for which match
// returns true has been recorded: at once if one was recorded already. match
// is called with the Recorder's lock held and must not call its methods.
func (r *Recorder) Until(match func(lifecycle.Event) bool) <-chan struct{} {
	ch := make(chan struct{})
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.ContainsFunc(r.events, match) {
		close(ch)
		return ch
	}
	r.waiters = append(r.waiters, waiter{match: match, ch: ch})
	return ch
}

// Seen returns a channel that is closed once an event of kind for component
// has been recorded (at once if it was already). An empty component means
// the Group's own events (EventPhase, EventShutdown, EventForced).
func (r *Recorder) Seen(kind lifecycle.EventKind, component string) <-chan struct{} {
	return r.Until(func(ev lifecycle.Event) bool { return ev.Kind == kind && ev.Component == component })
}

// PhaseSeen returns a channel that is closed once the Group has reported
// entering phase p (at once if it did already).
func (r *Recorder) PhaseSeen(p lifecycle.Phase) <-chan struct{} {
	return r.Until(func(ev lifecycle.Event) bool { return ev.Kind == lifecycle.EventPhase && ev.Phase == p })
}

// Events returns a copy of the events recorded so far, in order.
func (r *Recorder) Events() []lifecycle.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Kinds returns the kinds of the events recorded for component, in order
// (for the Group's own events, pass "").
func (r *Recorder) Kinds(component string) []lifecycle.EventKind {
	var out []lifecycle.EventKind
	for _, ev := range r.Events() {
		if ev.Component == component {
			out = append(out, ev.Kind)
		}
	}
	return out
}

// Names returns the components of the events of kind, in the order they
// were recorded, once per event: Names(lifecycle.EventStopping) is the order
// in which the components were told to stop.
func (r *Recorder) Names(kind lifecycle.EventKind) []string {
	var out []string
	for _, ev := range r.Events() {
		if ev.Kind == kind && ev.Component != "" {
			out = append(out, ev.Component)
		}
	}
	return out
}

// Phases returns the phases the Group reported entering, in order.
func (r *Recorder) Phases() []lifecycle.Phase {
	var out []lifecycle.Phase
	for _, ev := range r.Events() {
		if ev.Kind == lifecycle.EventPhase {
			out = append(out, ev.Phase)
		}
	}
	return out
}

// Count returns how many events of kind were recorded for component.
func (r *Recorder) Count(kind lifecycle.EventKind, component string) int {
	n := 0
	for _, ev := range r.Events() {
		if ev.Kind == kind && ev.Component == component {
			n++
		}
	}
	return n
}

// String returns the events recorded so far, one a line, numbered from 0 as
// the assertions' messages refer to them.
func (r *Recorder) String() string {
	return format(r.Events())
}

func format(evs []lifecycle.Event) string {
	var b strings.Builder
	for i, ev := range evs {
		fmt.Fprintf(&b, "  #%d %s\n", i, describe(ev))
	}
	return b.String()
}

// describe says what one event reports, in a few words.
func describe(ev lifecycle.Event) string {
	var s string
	switch {
	case ev.Kind == lifecycle.EventPhase:
		s = "phase " + ev.Phase.String()
	case ev.Component != "":
		s = ev.Kind.String() + " " + ev.Component
	default:
		s = ev.Kind.String()
	}
	if ev.Err != nil {
		s += ": " + ev.Err.Error()
	}
	return s
}

// find returns the index of the first (or, with last, the last) event of
// kind for component in evs, or -1.
func find(evs []lifecycle.Event, kind lifecycle.EventKind, component string, last bool) int {
	match := func(ev lifecycle.Event) bool { return ev.Kind == kind && ev.Component == component }
	if last {
		for i := len(evs) - 1; i >= 0; i-- {
			if match(evs[i]) {
				return i
			}
		}
		return -1
	}
	return slices.IndexFunc(evs, match)
}

// at says where event i is, for a message: "#7", or "never".
func at(i int) string {
	if i < 0 {
		return "never"
	}
	return fmt.Sprintf("#%d", i)
}

// fail reports a failed check in want/have form, with the events.
func fail(tb testing.TB, evs []lifecycle.Event, check, want, have string) bool {
	tb.Helper()
	tb.Errorf("lifecycletest: %s\nwant: %s\nhave: %s\nevents:\n%s", check, want, have, format(evs))
	return false
}

// StoppedBefore checks that component a had stopped (its Stop and Start had
// returned: EventStopped) before component b was told to stop
// (EventStopping), as it must when b depends on a (a was added after b, or
// declared After it). It looks at the last time each was stopped: the
// shutdown. A component abandoned instead of stopped fails the check.
func (r *Recorder) StoppedBefore(tb testing.TB, a, b string) bool {
	tb.Helper()
	evs := r.Events()
	ia := find(evs, lifecycle.EventStopped, a, true)
	ib := find(evs, lifecycle.EventStopping, b, true)
	check := fmt.Sprintf("StoppedBefore(%q, %q)", a, b)
	want := fmt.Sprintf("%q stopped, then %q stopping", a, b)
	if ia >= 0 && ib >= 0 && ia < ib {
		return true
	}
	have := fmt.Sprintf("%q stopped %s, %q stopping %s", a, at(ia), b, at(ib))
	if ia < 0 {
		if j := find(evs, lifecycle.EventAbandoned, a, true); j >= 0 {
			have += fmt.Sprintf(" (%q was abandoned at #%d)", a, j)
		}
	}
	return fail(tb, evs, check, want, have)
}

// StartedAfterReady checks that component a was started (EventStarting)
// only after component b was ready (EventReady), as it must when a depends
// on b. It looks at the first start of each.
func (r *Recorder) StartedAfterReady(tb testing.TB, a, b string) bool {
	tb.Helper()
	evs := r.Events()
	ia := find(evs, lifecycle.EventStarting, a, false)
	ib := find(evs, lifecycle.EventReady, b, false)
	if ia >= 0 && ib >= 0 && ib < ia {
		return true
	}
	return fail(tb, evs, fmt.Sprintf("StartedAfterReady(%q, %q)", a, b),
		fmt.Sprintf("%q ready, then %q starting", b, a),
		fmt.Sprintf("%q ready %s, %q starting %s", b, at(ib), a, at(ia)))
}

// ReadinessOffBeforeStop checks the first step of a graceful shutdown: the
// Group, once running, entered the drain phase (readiness off, so load
// balancers stop routing to it) before any component was told to stop. It
// fails if the Group never ran, or never stopped a component, since then
// there was nothing to check.
func (r *Recorder) ReadinessOffBeforeStop(tb testing.TB) bool {
	tb.Helper()
	evs := r.Events()
	isPhase := func(p lifecycle.Phase) func(lifecycle.Event) bool {
		return func(ev lifecycle.Event) bool { return ev.Kind == lifecycle.EventPhase && ev.Phase == p }
	}
	running := slices.IndexFunc(evs, isPhase(lifecycle.PhaseRunning))
	draining := slices.IndexFunc(evs, isPhase(lifecycle.PhaseDraining))
	stopping := slices.IndexFunc(evs, func(ev lifecycle.Event) bool { return ev.Kind == lifecycle.EventStopping })
	if running >= 0 && stopping >= 0 && running < draining && draining < stopping {
		return true
	}
	return fail(tb, evs, "ReadinessOffBeforeStop",
		"phase running, then phase draining, then the first component stopping",
		fmt.Sprintf("running %s, draining %s, first stopping %s", at(running), at(draining), at(stopping)))
}

// NothingAbandoned checks that no component was abandoned: every Stop (and
// every Start after its Stop, and every Drain) returned within the budget.
func (r *Recorder) NothingAbandoned(tb testing.TB) bool {
	tb.Helper()
	evs := r.Events()
	var have []string
	for i, ev := range evs {
		if ev.Kind == lifecycle.EventAbandoned {
			have = append(have, fmt.Sprintf("#%d %s", i, describe(ev)))
		}
	}
	if len(have) == 0 {
		return true
	}
	return fail(tb, evs, "NothingAbandoned", "no abandoned event", strings.Join(have, "; "))
}

// StoppedOnce checks that component's Stop was called exactly once
// (exactly one EventStopping).
func (r *Recorder) StoppedOnce(tb testing.TB, component string) bool {
	tb.Helper()
	evs := r.Events()
	n := 0
	for _, ev := range evs {
		if ev.Kind == lifecycle.EventStopping && ev.Component == component {
			n++
		}
	}
	if n == 1 {
		return true
	}
	return fail(tb, evs, fmt.Sprintf("StoppedOnce(%q)", component),
		fmt.Sprintf("Stop of %q called once", component),
		fmt.Sprintf("called %d times", n))
}

// EveryStartedStoppedOnce checks the Group's promise about Stop: for every
// component that was started (EventStarting), Stop was called exactly once
// (EventStopping) after its last start, unless that start failed before the
// component was ready (EventExited before any EventReady or EventStopping),
// in which case Stop was not called at all; and no start was followed by
// more than one Stop. A Stop of a component never started fails the check too.
func (r *Recorder) EveryStartedStoppedOnce(tb testing.TB) bool {
	tb.Helper()
	evs := r.Events()
	type life struct {
		stops              int
		ready, exitedEarly bool
	}
	lives := map[string][]*life{}
	var names []string
	var problems []string
	for i, ev := range evs {
		if ev.Component == "" {
			continue
		}
		ls := lives[ev.Component]
		if ev.Kind == lifecycle.EventStarting {
			if ls == nil {
				names = append(names, ev.Component)
			}
			lives[ev.Component] = append(ls, &life{})
			continue
		}
		if len(ls) == 0 {
			if ev.Kind == lifecycle.EventStopping {
				problems = append(problems, fmt.Sprintf("%q stopping at #%d but never started", ev.Component, i))
			}
			continue
		}
		l := ls[len(ls)-1]
		switch ev.Kind {
		case lifecycle.EventReady:
			l.ready = true
		case lifecycle.EventExited:
			if !l.ready && l.stops == 0 {
				l.exitedEarly = true
			}
		case lifecycle.EventStopping:
			l.stops++
		}
	}
	for _, name := range names {
		ls := lives[name]
		for n, l := range ls {
			last := n == len(ls)-1
			var want string
			switch {
			case l.exitedEarly && l.stops > 0:
				want = "0 (its Start failed before it was ready)"
			case l.stops > 1:
				want = "at most 1"
			case last && !l.exitedEarly && l.stops != 1:
				want = "1"
			default:
				continue // an earlier start that ended by itself may or may not have been stopped
			}
			problems = append(problems, fmt.Sprintf("%q (start %d of %d): Stop called %d times, want %s",
				name, n+1, len(ls), l.stops, want))
		}
	}
	if len(problems) == 0 {
		return true
	}
	return fail(tb, evs, "EveryStartedStoppedOnce",
		"one Stop per started component (none if its Start failed before it was ready)",
		strings.Join(problems, "; "))
}
