package lifecycletest

import (
	"errors"
	"slices"
	"testing"

	"github.com/graceful-go/graceful/lifecycle"
)

// feed returns a Recorder that has observed evs.
func feed(evs ...lifecycle.Event) *Recorder {
	r := NewRecorder()
	for _, ev := range evs {
		r.Observe(ev)
	}
	return r
}

func phase(p lifecycle.Phase) lifecycle.Event {
	return lifecycle.Event{Kind: lifecycle.EventPhase, Phase: p}
}

func ev(k lifecycle.EventKind, name string) lifecycle.Event {
	return lifecycle.Event{Kind: k, Component: name}
}

// cleanRun is the event sequence of a Group of db then api, started, run and
// stopped cleanly.
func cleanRun() []lifecycle.Event {
	return []lifecycle.Event{
		phase(lifecycle.PhaseStarting),
		ev(lifecycle.EventStarting, "db"), ev(lifecycle.EventReady, "db"),
		ev(lifecycle.EventStarting, "api"), ev(lifecycle.EventReady, "api"),
		phase(lifecycle.PhaseRunning),
		{Kind: lifecycle.EventShutdown, Err: errors.New("test")},
		phase(lifecycle.PhaseDraining),
		phase(lifecycle.PhaseStopping),
		ev(lifecycle.EventStopping, "api"), ev(lifecycle.EventExited, "api"), ev(lifecycle.EventStopped, "api"),
		ev(lifecycle.EventStopping, "db"), ev(lifecycle.EventExited, "db"), ev(lifecycle.EventStopped, "db"),
		phase(lifecycle.PhaseStopped),
	}
}

// TestAssertionsPassOnAGoodRun runs a real Group and checks that every
// assertion holds for it.
func TestAssertionsPassOnAGoodRun(t *testing.T) {
	g, rec := New(t)
	g.Add("db", NewFake())
	g.Add("cache", NewFake())
	g.Add("api", NewFake())
	run := Run(t, g)
	run.WaitReady()
	if err := run.Stop(); err != nil {
		t.Fatalf("Run: want nil, have %v", err)
	}
	rec.StartedAfterReady(t, "cache", "db")
	rec.StartedAfterReady(t, "api", "cache")
	rec.ReadinessOffBeforeStop(t)
	rec.StoppedBefore(t, "api", "cache")
	rec.StoppedBefore(t, "cache", "db")
	rec.NothingAbandoned(t)
	rec.StoppedOnce(t, "db")
	rec.EveryStartedStoppedOnce(t)
	if have, want := rec.Names(lifecycle.EventStopping), []string{"api", "cache", "db"}; !slices.Equal(have, want) {
		t.Errorf("Names(stopping): want %v, have %v", want, have)
	}
}

// TestAssertionsFail feeds event sequences that break each promise, and
// checks that the assertion reports it, in want/have form.
func TestAssertionsFail(t *testing.T) {
	swap := func(evs []lifecycle.Event, i, j int) []lifecycle.Event {
		evs[i], evs[j] = evs[j], evs[i]
		return evs
	}
	without := func(evs []lifecycle.Event, drop lifecycle.Event) []lifecycle.Event {
		return slices.DeleteFunc(evs, func(e lifecycle.Event) bool {
			return e.Kind == drop.Kind && e.Component == drop.Component && e.Phase == drop.Phase
		})
	}
	tests := []struct {
		name   string
		evs    []lifecycle.Event
		check  func(*Recorder, *spy) bool
		parts  []string
		passes bool
	}{
		{"StoppedBefore holds", cleanRun(),
			func(r *Recorder, s *spy) bool { return r.StoppedBefore(s, "api", "db") }, nil, true},
		{"StoppedBefore reversed", cleanRun(),
			func(r *Recorder, s *spy) bool { return r.StoppedBefore(s, "db", "api") },
			[]string{`StoppedBefore("db", "api")`, `want: "db" stopped, then "api" stopping`, `have: "db" stopped #14, "api" stopping #9`, "#9 stopping api"}, false},
		{"StoppedBefore abandoned", append(cleanRun()[:10], ev(lifecycle.EventAbandoned, "api"), ev(lifecycle.EventStopping, "db")),
			func(r *Recorder, s *spy) bool { return r.StoppedBefore(s, "api", "db") },
			[]string{`have: "api" stopped never, "db" stopping #11 ("api" was abandoned at #10)`}, false},
		{"StartedAfterReady holds", cleanRun(),
			func(r *Recorder, s *spy) bool { return r.StartedAfterReady(s, "api", "db") }, nil, true},
		{"StartedAfterReady too early", swap(cleanRun(), 2, 3),
			func(r *Recorder, s *spy) bool { return r.StartedAfterReady(s, "api", "db") },
			[]string{`want: "db" ready, then "api" starting`, `have: "db" ready #3, "api" starting #2`}, false},
		{"ReadinessOffBeforeStop holds", cleanRun(),
			func(r *Recorder, s *spy) bool { return r.ReadinessOffBeforeStop(s) }, nil, true},
		{"ReadinessOffBeforeStop no drain", without(cleanRun(), phase(lifecycle.PhaseDraining)),
			func(r *Recorder, s *spy) bool { return r.ReadinessOffBeforeStop(s) },
			[]string{"want: phase running, then phase draining, then the first component stopping", "have: running #5, draining never, first stopping #8"}, false},
		{"ReadinessOffBeforeStop drain late", swap(cleanRun(), 7, 9),
			func(r *Recorder, s *spy) bool { return r.ReadinessOffBeforeStop(s) },
			[]string{"have: running #5, draining #9, first stopping #7"}, false},
		{"ReadinessOffBeforeStop never ran", without(cleanRun(), phase(lifecycle.PhaseRunning)),
			func(r *Recorder, s *spy) bool { return r.ReadinessOffBeforeStop(s) },
			[]string{"have: running never"}, false},
		{"NothingAbandoned holds", cleanRun(),
			func(r *Recorder, s *spy) bool { return r.NothingAbandoned(s) }, nil, true},
		{"NothingAbandoned", append(cleanRun(), lifecycle.Event{Kind: lifecycle.EventAbandoned, Component: "db", Err: errors.New("stuck")}),
			func(r *Recorder, s *spy) bool { return r.NothingAbandoned(s) },
			[]string{"want: no abandoned event", "have: #16 abandoned db: stuck"}, false},
		{"StoppedOnce holds", cleanRun(),
			func(r *Recorder, s *spy) bool { return r.StoppedOnce(s, "api") }, nil, true},
		{"StoppedOnce twice", append(cleanRun(), ev(lifecycle.EventStopping, "api")),
			func(r *Recorder, s *spy) bool { return r.StoppedOnce(s, "api") },
			[]string{`want: Stop of "api" called once`, "have: called 2 times"}, false},
		{"StoppedOnce never", without(cleanRun(), ev(lifecycle.EventStopping, "api")),
			func(r *Recorder, s *spy) bool { return r.StoppedOnce(s, "api") },
			[]string{"have: called 0 times"}, false},
		{"EveryStartedStoppedOnce holds", cleanRun(),
			func(r *Recorder, s *spy) bool { return r.EveryStartedStoppedOnce(s) }, nil, true},
		{"EveryStartedStoppedOnce start failure not stopped", []lifecycle.Event{
			ev(lifecycle.EventStarting, "db"), ev(lifecycle.EventReady, "db"),
			ev(lifecycle.EventStarting, "api"), {Kind: lifecycle.EventExited, Component: "api", Err: errors.New("no")},
			ev(lifecycle.EventStopping, "db"), ev(lifecycle.EventStopped, "db")},
			func(r *Recorder, s *spy) bool { return r.EveryStartedStoppedOnce(s) }, nil, true},
		{"EveryStartedStoppedOnce missed", without(cleanRun(), ev(lifecycle.EventStopping, "db")),
			func(r *Recorder, s *spy) bool { return r.EveryStartedStoppedOnce(s) },
			[]string{`"db" (start 1 of 1): Stop called 0 times, want 1`}, false},
		{"EveryStartedStoppedOnce failed start stopped", []lifecycle.Event{
			ev(lifecycle.EventStarting, "api"), {Kind: lifecycle.EventExited, Component: "api", Err: errors.New("no")},
			ev(lifecycle.EventStopping, "api")},
			func(r *Recorder, s *spy) bool { return r.EveryStartedStoppedOnce(s) },
			[]string{`"api" (start 1 of 1): Stop called 1 times, want 0 (its Start failed before it was ready)`}, false},
		{"EveryStartedStoppedOnce twice", append(cleanRun(), ev(lifecycle.EventStopping, "api")),
			func(r *Recorder, s *spy) bool { return r.EveryStartedStoppedOnce(s) },
			[]string{`"api" (start 1 of 1): Stop called 2 times, want at most 1`}, false},
		{"EveryStartedStoppedOnce never started", append(cleanRun(), ev(lifecycle.EventStopping, "ghost")),
			func(r *Recorder, s *spy) bool { return r.EveryStartedStoppedOnce(s) },
			[]string{`"ghost" stopping at #16 but never started`}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSpy(t)
			defer s.end()
			ok := tt.check(feed(tt.evs...), s)
			if ok != tt.passes {
				t.Errorf("want the check to return %v, have %v", tt.passes, ok)
			}
			if tt.passes {
				wantNoFailure(t, s)
				return
			}
			wantFailure(t, s, tt.parts...)
		})
	}
}

func TestRecorderAccessors(t *testing.T) {
	r := feed(cleanRun()...)
	if have, want := r.Kinds("db"), []lifecycle.EventKind{lifecycle.EventStarting, lifecycle.EventReady,
		lifecycle.EventStopping, lifecycle.EventExited, lifecycle.EventStopped}; !slices.Equal(have, want) {
		t.Errorf("Kinds(db): want %v, have %v", want, have)
	}
	if have, want := r.Names(lifecycle.EventStarting), []string{"db", "api"}; !slices.Equal(have, want) {
		t.Errorf("Names(starting): want %v, have %v", want, have)
	}
	if have, want := r.Phases(), []lifecycle.Phase{lifecycle.PhaseStarting, lifecycle.PhaseRunning,
		lifecycle.PhaseDraining, lifecycle.PhaseStopping, lifecycle.PhaseStopped}; !slices.Equal(have, want) {
		t.Errorf("Phases: want %v, have %v", want, have)
	}
	if have := r.Count(lifecycle.EventStopped, "api"); have != 1 {
		t.Errorf("Count(stopped, api): want 1, have %d", have)
	}
	if have := len(r.Events()); have != len(cleanRun()) {
		t.Errorf("Events: want %d, have %d", len(cleanRun()), have)
	}
	if have, want := r.String()[:len("  #0 phase starting\n  #1 starting db\n")], "  #0 phase starting\n  #1 starting db\n"; have != want {
		t.Errorf("String: want it to begin %q, have %q", want, have)
	}
}

func TestRecorderWaits(t *testing.T) {
	r := NewRecorder()
	ready := r.Seen(lifecycle.EventReady, "db")
	stopped := r.PhaseSeen(lifecycle.PhaseStopped)
	r.Observe(ev(lifecycle.EventReady, "api")) // another component: no match
	select {
	case <-ready:
		t.Fatal("Seen(ready, db) closed by api's ready event")
	default:
	}
	r.Observe(ev(lifecycle.EventReady, "db"))
	select {
	case <-ready:
	default:
		t.Fatal("Seen(ready, db) not closed after db's ready event")
	}
	select {
	case <-stopped:
		t.Fatal("PhaseSeen(stopped) closed before the phase")
	default:
	}
	// Asked after the event: closed at once.
	select {
	case <-r.Seen(lifecycle.EventReady, "api"):
	default:
		t.Fatal("Seen(ready, api) asked after the event is not closed")
	}
	r.Observe(phase(lifecycle.PhaseStopped))
	<-stopped
}
