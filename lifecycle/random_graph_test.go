package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRandomGraph checks the dependency graph on random declarations, which
// may name any component (one added later, itself) or one that does not
// exist: a declaration with an unknown name, a component that needs itself,
// or a cycle is a configuration error that Run returns before anything
// starts, naming the problem (the cycle it names is one of the graph); any
// other graph starts every component once all it needs is ready, and stops
// it once all that needs it has stopped.
func TestRandomGraph(t *testing.T) {
	var valid, cyclic, other atomic.Int32
	rndEachSeed(t, 400, 0x2545f4914f6cdd1d, func(t *testing.T, r *rand.Rand) {
		switch graphCheck(t, r) {
		case graphValid:
			valid.Add(1)
		case graphCycle:
			cyclic.Add(1)
		default:
			other.Add(1)
		}
	})
	t.Logf("%d valid graphs, %d with a cycle, %d with an unknown name or a self-dependency", valid.Load(), cyclic.Load(), other.Load())
	if valid.Load() == 0 || cyclic.Load() == 0 || other.Load() == 0 {
		t.Errorf("the generator missed a kind of graph")
	}
}

type graphKind int

const (
	graphValid graphKind = iota
	graphCycle
	graphBad // an unknown name or a self-dependency
)

// graphComp runs until Stop and counts its calls.
type graphComp struct {
	quit          chan struct{}
	starts, stops atomic.Int32
}

func (c *graphComp) Start(ctx context.Context) error {
	c.starts.Add(1)
	select {
	case <-c.quit:
	case <-ctx.Done():
	}
	return nil
}

func (c *graphComp) Stop(context.Context) error {
	if c.stops.Add(1) == 1 {
		close(c.quit)
	}
	return nil
}

// graphCheck builds one random Group, runs it, and checks the outcome; it
// returns the kind of graph it built.
func graphCheck(t *testing.T, r *rand.Rand) graphKind {
	n := 1 + r.IntN(7)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("g%d", i)
	}
	needs := make([][]int, n) // by index; -1 is the unknown name
	declared := make([][]string, n)
	chain := make([]bool, n)
	kind := graphValid
	bad := r.IntN(5) == 0 // one graph in five has an unknown name or a self-dependency
	for i := range n {
		switch r.IntN(4) {
		case 0: // no After: the one added before
			chain[i] = true
			if i > 0 {
				needs[i] = []int{i - 1}
			}
		case 1: // After()
		default:
			for range 1 + r.IntN(3) {
				j := r.IntN(n)
				switch x := r.IntN(10); {
				case bad && x == 0:
					j = -1
				case bad && x == 1:
					j = i
				case x < 7:
					j = r.IntN(max(i, 1)) // mostly earlier ones: mostly acyclic
				}
				if j == i && !bad {
					if n == 1 {
						continue // nothing else to name
					}
					j = (i + 1 + r.IntN(n-1)) % n // any but itself
				}
				if j == -1 {
					declared[i] = append(declared[i], "nobody")
				} else {
					declared[i] = append(declared[i], names[j])
				}
				if !rndContains(needs[i], j) {
					needs[i] = append(needs[i], j)
				}
				if j == -1 || j == i {
					kind = graphBad
				}
			}
		}
	}
	if kind == graphValid && graphHasCycle(needs) {
		kind = graphCycle
	}

	desc := func() string {
		var b strings.Builder
		for i := range n {
			if chain[i] {
				fmt.Fprintf(&b, " %s(chain)", names[i])
			} else {
				fmt.Fprintf(&b, " %s%v", names[i], declared[i])
			}
		}
		return b.String()
	}

	var mu sync.Mutex
	var evs []Event
	g := New(WithSignals(), WithLogger(nil), WithDrainDelay(0), WithObserver(func(ev Event) {
		mu.Lock()
		evs = append(evs, ev)
		mu.Unlock()
	}))
	comps := make([]*graphComp, n)
	for i := range n {
		comps[i] = &graphComp{quit: make(chan struct{})}
		if chain[i] {
			g.Add(names[i], comps[i])
		} else {
			g.Add(names[i], comps[i], After(declared[i]...))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-g.Ready():
			cancel()
		case <-ctx.Done():
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	failsafe := time.NewTimer(rndFailsafe)
	defer failsafe.Stop()
	var err error
	select {
	case err = <-errc:
	case <-failsafe.C:
		t.Fatalf("graph%s: Run has not returned after %v", desc(), rndFailsafe)
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	if kind != graphValid {
		if !errors.Is(err, ErrInvalid) || ExitCode(err) != ExitInvalid {
			t.Errorf("graph%s: Run = %v; want ErrInvalid", desc(), err)
		}
		for i, c := range comps {
			if c.starts.Load()+c.stops.Load() != 0 {
				t.Errorf("graph%s: invalid, but %s was started or stopped", desc(), names[i])
			}
		}
		for _, ev := range evs {
			if ev.Kind == EventStarting {
				t.Errorf("graph%s: invalid, but EventStarting %s", desc(), ev.Component)
			}
		}
		msg := fmt.Sprint(err)
		switch kind {
		case graphBad:
			if !strings.Contains(msg, "nobody") && !strings.Contains(msg, "needs itself") {
				t.Errorf("graph%s: Run = %v; want the unknown name or the self-dependency named", desc(), err)
			}
		case graphCycle:
			graphCheckCycle(t, msg, names, needs, desc())
		}
		return kind
	}

	if err != nil {
		t.Errorf("graph%s: Run = %v; want nil", desc(), err)
	}
	at := func(k EventKind, name string) int {
		for i, ev := range evs {
			if ev.Kind == k && ev.Component == name {
				return i
			}
		}
		return -1
	}
	for i := range n {
		if s, p := comps[i].starts.Load(), comps[i].stops.Load(); s != 1 || p != 1 {
			t.Errorf("graph%s: %s Start×%d Stop×%d; want once each", desc(), names[i], s, p)
		}
		for _, j := range needs[i] {
			if at(EventStarting, names[i]) < at(EventReady, names[j]) {
				t.Errorf("graph%s: %s started before %s, which it needs, was ready", desc(), names[i], names[j])
			}
			if at(EventStopping, names[j]) < at(EventStopped, names[i]) {
				t.Errorf("graph%s: %s stopped before %s, which needs it, had stopped", desc(), names[j], names[i])
			}
		}
	}
	return kind
}

// graphHasCycle reports whether the graph (needs by index, -1 ignored) has
// a cycle.
func graphHasCycle(needs [][]int) bool {
	state := make([]int, len(needs)) // 0 new, 1 on the path, 2 done
	var visit func(i int) bool
	visit = func(i int) bool {
		state[i] = 1
		for _, j := range needs[i] {
			if j < 0 {
				continue
			}
			if state[j] == 1 || state[j] == 0 && visit(j) {
				return true
			}
		}
		state[i] = 2
		return false
	}
	for i := range needs {
		if state[i] == 0 && visit(i) {
			return true
		}
	}
	return false
}

// graphCheckCycle checks that the error names a cycle of the graph: "a -> b
// -> ... -> a", each one needing the next.
func graphCheckCycle(t *testing.T, msg string, names []string, needs [][]int, desc string) {
	t.Helper()
	_, after, ok := strings.Cut(msg, "dependency cycle: ")
	if !ok {
		t.Errorf("graph%s: Run = %s; want the cycle named", desc, msg)
		return
	}
	if i := strings.IndexByte(after, '\n'); i >= 0 {
		after = after[:i]
	}
	index := map[string]int{}
	for i, name := range names {
		index[name] = i
	}
	path := strings.Split(after, " -> ")
	if len(path) < 3 || path[0] != path[len(path)-1] {
		t.Errorf("graph%s: cycle %q does not end where it began", desc, after)
		return
	}
	for k := 0; k+1 < len(path); k++ {
		a, okA := index[path[k]]
		b, okB := index[path[k+1]]
		if !okA || !okB || !rndContains(needs[a], b) {
			t.Errorf("graph%s: cycle %q: %s does not need %s", desc, after, path[k], path[k+1])
		}
	}
}
