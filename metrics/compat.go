package metrics

import "github.com/graceful-go/graceful/lifecycle"

// Event kinds of engine v2 (supervision) that the lifecycle package on this
// branch does not have yet. They are looked up by name, so that the Collector
// counts restarts as soon as the engine reports them; until then they are
// values that no event carries.
//
// TODO(merge): once lifecycle has EventRestarting and EventGaveUp, delete
// this file and use them in Observe (and in the tests).
var (
	eventRestarting = kindNamed(-1, "restarting")
	eventGaveUp     = kindNamed(-2, "gave up", "gave_up", "gaveup", "gave-up")
)

// kindNamed returns the EventKind whose String is one of names, or fallback.
func kindNamed(fallback lifecycle.EventKind, names ...string) lifecycle.EventKind {
	for k := lifecycle.EventKind(1); k < 64; k++ {
		s := k.String()
		for _, n := range names {
			if s == n {
				return k
			}
		}
	}
	return fallback
}
