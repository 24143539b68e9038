package lifecycle

import (
	"math/rand/v2"
	"time"
)

// RestartPolicy says how a failed component is started again: after a
// delay that doubles with each failure in a row (from Backoff up to
// MaxBackoff, less up to a fifth at random so that restarts spread out), as
// long as it has failed at most MaxRestarts times within Window. One more
// failure and it gives up: a component that is [Optional] stays failed and
// the Group runs on, degraded; any other shuts the Group down with a
// [*GaveUpError] naming its last failures. A component that runs for
// ResetAfter without failing starts afresh: its earlier failures no longer
// count, and its delays start from Backoff again.
//
// What counts as a failure: Start returning (an error, a panic, or nil)
// while the Group is running, and Start failing before the component was
// ready. A failed component that was ready is stopped first (its Stop is
// called once for that start), then started again; a component waiting in
// its backoff when the shutdown begins is not started again. What needs a
// restarting component keeps running (one for one): it is neither stopped
// nor started again with it.
//
// A component is started again by calling its Start again, which the
// adapters of this package ([Func], [Worker], [Hooks] and those built on it)
// support; any other component needs New, which returns a fresh instance
// for each restart (a new server, with a new listener).
type RestartPolicy struct {
	Backoff     time.Duration // the delay before the first restart; zero restarts at once
	MaxBackoff  time.Duration // the longest delay; zero means Backoff
	MaxRestarts int           // at most this many restarts within Window (positive)
	Window      time.Duration // positive
	ResetAfter  time.Duration // zero means Window
	New         func() Component
}

// Restart supervises the component with policy p. Run reports a policy
// that is not valid (negative durations, MaxRestarts or Window not
// positive, MaxBackoff below Backoff) as a configuration error.
func Restart(p RestartPolicy) AddOption {
	return func(s *spec) {
		switch {
		case p.Backoff < 0 || p.MaxBackoff < 0 || p.ResetAfter < 0:
			s.errs = append(s.errs, invalid("Restart: negative duration in %+v", p))
		case p.MaxRestarts <= 0:
			s.errs = append(s.errs, invalid("Restart: MaxRestarts %d is not positive", p.MaxRestarts))
		case p.Window <= 0:
			s.errs = append(s.errs, invalid("Restart: Window %v is not positive", p.Window))
		case p.MaxBackoff != 0 && p.MaxBackoff < p.Backoff:
			s.errs = append(s.errs, invalid("Restart: MaxBackoff %v is below Backoff %v", p.MaxBackoff, p.Backoff))
		default:
			if p.MaxBackoff == 0 {
				p.MaxBackoff = p.Backoff
			}
			if p.ResetAfter == 0 {
				p.ResetAfter = p.Window
			}
			s.restart = &p
		}
	}
}

// Optional marks a component whose failure does not shut the Group down:
// when it gives up (it has no [Restart] policy, or failed more often than
// the policy allows), the Group runs on without it, degraded, and
// [Group.Status] and the verbose health handlers say so. An optional
// component does not gate readiness: the Group is ready while it starts
// again or after it gave up. Components that need it and have not started
// yet give up with it (they are never started); those running go on. Once
// the shutdown has begun, an optional component's errors (a Start that
// fails while draining, a Stop that fails or is abandoned) are reported in
// Run's error like any other's: the run did not end cleanly.
func Optional() AddOption {
	return func(s *spec) { s.optional = true }
}

// next decides, at a failure of u at now, whether u is started again and
// after what delay. u.failures includes this failure.
func (p *RestartPolicy) next(u *unit, now time.Time) (time.Duration, bool) {
	// A component that ran ResetAfter or more before this failure starts
	// afresh: its earlier failures are forgotten, and its delays start from
	// Backoff again.
	if !u.startedAt.IsZero() && now.Sub(u.startedAt) >= p.ResetAfter {
		u.streak = 0
		u.failures = u.failures[len(u.failures)-1:]
	}
	// Forget the failures outside the window.
	i := 0
	for i < len(u.failures) && now.Sub(u.failures[i].at) > p.Window {
		i++
	}
	u.failures = u.failures[i:]
	if len(u.failures) > p.MaxRestarts {
		return 0, false
	}
	u.streak++
	d := p.Backoff
	for k := 1; k < u.streak && d < p.MaxBackoff; k++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	if d > 0 {
		d -= time.Duration(rand.Int64N(int64(d)/5 + 1))
	}
	return d, true
}

// ComponentStatus is what [Group.Status] says of one component.
type ComponentStatus struct {
	Name     string
	State    State
	Since    time.Time // when it entered State
	Restarts int       // how many times it was started again
	Err      error     // its last failure, nil if none
	Optional bool      // marked Optional: it does not gate readiness
}

// Status returns the state of every component, in the order they were
// added. It does not block on the components and may be called at any
// time, from any goroutine.
func (g *Group) Status() []ComponentStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]ComponentStatus, len(g.units))
	for i, u := range g.units {
		out[i] = ComponentStatus{Name: u.name, State: u.state, Since: u.since,
			Restarts: u.restarts, Err: u.lastErr, Optional: u.spec.optional}
	}
	return out
}
