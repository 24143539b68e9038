package lifecycle

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"
)

// State is where one component is in its life. The Group's scheduler is
// the only code that changes it, from the Group's own goroutine; the
// transitions are those listed on each state.
type State int

// The states of a component.
const (
	// StateIdle: added, not started. Goes to StateStarting when everything
	// it needs is ready, or stays idle for good if the shutdown begins first.
	StateIdle State = iota
	// StateStarting: Start has been called and the component is not ready
	// yet. Goes to StateRunning when it is ready, to StateFailed when Start
	// returns (or its Ready panics) first, and to StateStopping when the
	// shutdown reaches it first.
	StateStarting
	// StateRunning: ready, and its Start is running. Goes to StateStopping
	// when the shutdown reaches it, and to StateExited when Start returns by
	// itself.
	StateRunning
	// StateExited: Start returned while nothing asked it to (an error, a
	// panic, or nil); the component is not serving. Its Stop is still to be
	// called: at once if it is restarted or given up (see [Restart],
	// [Optional]), else when the shutdown reaches it. Goes to StateStopping.
	StateExited
	// StateStopping: Stop has been called; the component is stopped when
	// both its Stop and its Start have returned. Goes to StateStopped, to
	// StateAbandoned when its time ran out first, or to StateBackoff or
	// StateFailed when it was stopped after a failure.
	StateStopping
	// StateBackoff: stopped after a failure, waiting to be started again by
	// its restart policy. Goes to StateStarting when the delay is over, or to
	// StateStopped when the shutdown begins first (it is not started again).
	StateBackoff
	// StateFailed: not running because it failed, and not started again:
	// its Start failed before it was ready (it is never stopped), or it gave
	// up after its restarts. For an optional component the Group goes on
	// without it, degraded. A final state.
	StateFailed
	// StateStopped: stopped, by the shutdown. A final state.
	StateStopped
	// StateAbandoned: its Stop, its Start after Stop, or its Drain did not
	// return in the time it had; the Group no longer waits for it, and names
	// it in Run's error. A final state.
	StateAbandoned
)

var stateNames = [...]string{"idle", "starting", "running", "exited", "stopping", "backoff", "failed", "stopped", "abandoned"}

// String returns the state's name, as Status and the verbose health
// handlers print it ("running", "backoff", ...).
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return "state(" + strconv.Itoa(int(s)) + ")"
	}
	return stateNames[s]
}

// unit is one component of a Group and everything the scheduler knows of it.
// Every field after spec is owned by the scheduler's goroutine, except the
// ones marked otherwise.
type unit struct {
	name string
	c    Component
	spec spec

	// The graph: fixed once the run begins.
	needs    []*unit
	neededBy []*unit
	reserve  time.Duration // what stops after it keeps for itself; see reserve()

	state State
	since time.Time // when it entered state

	// gen counts the starts of this unit. Messages from its goroutines carry
	// the generation they belong to, so a late message from an abandoned or
	// restarted instance is told apart.
	gen int

	waitNeeds      int // what it needs that is not ready yet (start)
	waitDependents int // what needs it that has not stopped yet (stop)

	inStart bool // its Start has been called and has not returned
	inStop  bool // its Stop has been called and has not returned
	inDrain bool // its Drain has been called and has not returned
	drained bool // its Drain was called (at most once per run)

	ctx     context.Context // its Start's context
	cancel  context.CancelCauseFunc
	stopCtx context.Context // its Stop's context, while stopping
	stopEnd context.CancelFunc
	end     time.Time // when it is abandoned, while stopping

	wasReady  bool          // it was ready once in this run (counted by the start)
	after     State         // the state it enters once stopped (stopped, backoff, failed)
	stopErr   error         // what its last Stop returned
	nextDelay time.Duration // its backoff before the next restart

	startedAt time.Time     // when Start was last called
	stopAt    time.Time     // when Stop was last called
	stopTook  time.Duration // how long its last stop took
	lastErr   error         // what its last failure was
	failures  []failure     // recent failures, for the restart policy
	streak    int           // failures in a row, for the backoff
	restarts  int           // how many times it was started again
	gaveUp    bool          // it failed and will not be started again

	// returned is the generation whose Start has returned, stored by the
	// goroutine running Start before it reports it, read by the scheduler
	// when it decides whether a component still starting is to be stopped
	// (one whose Start already failed is not).
	returned atomic.Int64

	// current is gen, for the goroutines of the unit: a Start whose Ready
	// returns after its generation was abandoned is not called.
	current atomic.Int64

	stopPending bool // its turn to stop came while its ready or exit was on the way
}

// failure is one failure of a unit, for its restart policy and its status.
type failure struct {
	at  time.Time
	err error
}

// needsStop reports whether the unit's Stop is still to be called in the
// stop phase: its Start was called and did not fail before it was ready.
func (u *unit) needsStop() bool {
	switch u.state {
	case StateStarting, StateRunning, StateExited:
		return true
	}
	return false
}
