package lifecycle

import (
	"strings"
	"time"
)

// The dependency graph of a Group: which component needs which. The graph
// is built once, when Run or Start begins, from what Add was told; it never
// changes after. The scheduler (run.go) walks it forwards to start and
// backwards to stop.

// link builds the graph over units (in the order of Add) and checks it: every
// name known, no component that needs itself, no cycle. It returns the
// configuration errors, each naming the problem.
func link(units []*unit, byName map[string]*unit) []error {
	var errs []error
	for i, u := range units {
		switch {
		case !u.spec.afterSet && i > 0:
			u.needs = units[i-1 : i : i] // no allocation for the common chain
		case u.spec.afterSet:
			seen := make(map[string]bool, len(u.spec.after))
			for _, name := range u.spec.after {
				d, ok := byName[name]
				switch {
				case name == u.name:
					errs = append(errs, invalid("component %q needs itself", u.name))
				case !ok:
					errs = append(errs, invalid("component %q needs %q, which is not in the Group", u.name, name))
				case !seen[name]:
					seen[name] = true
					u.needs = append(u.needs, d)
				}
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	for i, u := range units {
		for _, d := range u.needs {
			if d.neededBy == nil && i > 0 && d == units[i-1] {
				d.neededBy = units[i : i+1 : i+1] // the chain again: no allocation
				continue
			}
			if len(d.neededBy) > 0 && cap(d.neededBy) == len(d.neededBy) {
				d.neededBy = append(d.neededBy[:len(d.neededBy):len(d.neededBy)], u) // copies: never writes into units
				continue
			}
			d.neededBy = append(d.neededBy, u)
		}
	}
	if cycle := findCycle(units); cycle != nil {
		names := make([]string, len(cycle))
		for i, u := range cycle {
			names[i] = u.name
		}
		return []error{invalid("dependency cycle: %s", strings.Join(names, " -> "))}
	}
	return nil
}

// findCycle returns the components of a dependency cycle, the first one
// repeated at the end (a -> b -> a), or nil if the graph has none.
func findCycle(units []*unit) []*unit {
	const (
		white = iota // not visited
		grey         // on the current path
		black        // done: no cycle through it
	)
	color := make(map[*unit]int, len(units))
	var path []*unit
	var visit func(u *unit) []*unit
	visit = func(u *unit) []*unit {
		color[u] = grey
		path = append(path, u)
		for _, d := range u.needs {
			switch color[d] {
			case grey:
				for i, p := range path {
					if p == d {
						return append(append([]*unit(nil), path[i:]...), d)
					}
				}
			case white:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		color[u] = black
		return nil
	}
	for _, u := range units {
		if color[u] == white {
			if c := visit(u); c != nil {
				return c
			}
		}
	}
	return nil
}

// reserve computes, for every unit, the time that the components stopping
// after it keep for themselves inside the budget: the longest chain, through
// what the unit needs, of the components' own reserves. A component reserves
// its StopTimeout, or a tenth of the budget if it has none. When the longest
// of these chains is more than half the budget, every reserve is scaled down
// in proportion, so that no reserve is more than half the budget and the
// ends of a chain stay in order: each component still has time of its own.
func reserve(units []*unit, budget time.Duration) {
	own := func(u *unit) time.Duration {
		if u.spec.stopTimeout > 0 {
			return u.spec.stopTimeout
		}
		return budget / 10
	}
	var longest time.Duration
	if isChain(units) {
		// The common case, a chain in the order of Add: no recursion.
		var r time.Duration
		for _, u := range units {
			u.reserve = r
			r += own(u)
		}
		if len(units) > 0 {
			longest = units[len(units)-1].reserve
		}
	} else {
		done := make(map[*unit]bool, len(units))
		var walk func(u *unit) time.Duration // returns own(u) + u.reserve
		walk = func(u *unit) time.Duration {
			if !done[u] {
				var r time.Duration
				for _, d := range u.needs {
					r = max(r, walk(d))
				}
				u.reserve = r
				done[u] = true
				longest = max(longest, r)
			}
			return own(u) + u.reserve
		}
		for _, u := range units {
			walk(u)
		}
	}
	if half := budget / 2; longest > half {
		for _, u := range units {
			u.reserve = time.Duration(float64(u.reserve) * float64(half) / float64(longest))
		}
	}
}

// isChain reports whether every unit needs exactly the one added before it.
func isChain(units []*unit) bool {
	for i, u := range units {
		if i == 0 && len(u.needs) != 0 || i > 0 && (len(u.needs) != 1 || u.needs[0] != units[i-1]) {
			return false
		}
	}
	return true
}
