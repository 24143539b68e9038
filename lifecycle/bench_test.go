package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// The engine's own benchmarks, for profiling (go test -bench . -cpuprofile,
// -memprofile). The comparison with oklog/run, fx and errgroup, in the same
// run, is in the benchmarks module (benchmarks/run.sh).

// trivialComp is the smallest Component a user can write: Start blocks
// until Stop.
type trivialComp struct{ quit chan struct{} }

func (c *trivialComp) Start(context.Context) error { <-c.quit; return nil }
func (c *trivialComp) Stop(context.Context) error  { close(c.quit); return nil }

// benchKinds are the components whose start+stop is measured: a Component
// written by hand, Func and Worker. Each iteration makes new ones, as a
// program does.
var benchKinds = []struct {
	name  string
	make  func() Component
	after bool // added with After(): needs nothing, starts and stops concurrently
}{
	{"plain", func() Component { return &trivialComp{quit: make(chan struct{})} }, false},
	{"plain-after", func() Component { return &trivialComp{quit: make(chan struct{})} }, true},
	{"func", func() Component {
		return Func(func(ctx context.Context) error { <-ctx.Done(); return nil })
	}, false},
	{"worker", func() Component {
		return Worker(func(_ context.Context, stopping <-chan struct{}) error { <-stopping; return nil })
	}, false},
}

func benchGroup(opts ...Option) *Group {
	return New(append([]Option{WithSignals(), WithLogger(nil), WithDrainDelay(0)}, opts...)...)
}

// runReady runs g until it is running, then cancels it, and returns Run's
// error.
func runReady(g *Group) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-g.Ready()
		cancel()
	}()
	return g.Run(ctx)
}

// BenchmarkStartStop starts and stops N components of each kind in a Group
// (add, start, wait until all are ready, stop, wait until Run returned),
// and reports the cost per component.
func BenchmarkStartStop(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10_000} {
		names := make([]string, n)
		for i := range names {
			names[i] = "c" + strconv.Itoa(i)
		}
		for _, k := range benchKinds {
			b.Run(fmt.Sprintf("N=%d/kind=%s", n, k.name), func(b *testing.B) {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.ResetTimer()
				for b.Loop() {
					g := benchGroup()
					var opts []AddOption
					if k.after {
						opts = append(opts, After())
					}
					for i := range n {
						g.Add(names[i], k.make(), opts...)
					}
					if err := runReady(g); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				runtime.ReadMemStats(&after)
				per := float64(b.N * n)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/component")
				b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/component")
				b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/component")
			})
		}
	}
}

// BenchmarkRestart fails a Func worker b.N times in one Run, each time
// restarted at once (zero backoff), and reports the time per restart: from
// the failure through the stop of the failed start to ready again.
func BenchmarkRestart(b *testing.B) {
	fail := errors.New("fail")
	restarts := b.N
	again := make(chan struct{})
	var first, last time.Time
	g := benchGroup(WithObserver(func(e Event) {
		if e.Kind != EventReady {
			return
		}
		if e.Attempt == 0 {
			first = e.Time
		}
		if e.Attempt == restarts {
			last = e.Time
			close(again)
		}
	}))
	calls := 0
	g.Add("worker", Func(func(ctx context.Context) error {
		calls++
		if calls <= restarts {
			return fail
		}
		<-ctx.Done()
		return nil
	}), Restart(RestartPolicy{MaxRestarts: 1 << 30, Window: time.Second}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-again
		cancel()
	}()
	b.ReportAllocs()
	if err := g.Run(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(last.Sub(first).Nanoseconds())/1000/float64(restarts), "µs/restart")
}

// BenchmarkStatus measures one call of Status on a running Group.
func BenchmarkStatus(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			g := benchGroup()
			for i := range n {
				g.Add("c"+strconv.Itoa(i), &trivialComp{quit: make(chan struct{})})
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			<-g.Ready()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if st := g.Status(); len(st) != n {
					b.Fatalf("have %d statuses, want %d", len(st), n)
				}
			}
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
