package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

// errFail is the failure of the restarted worker.
var errFail = errors.New("fail")

// restartTimes runs a Group with one lifecycle.Func worker that fails at once
// restarts times, restarted by a policy with no backoff, then runs until it
// is stopped. It returns the time from the first ready to the ready after
// the last restart, and the allocations and bytes from New to that ready.
func restartTimes(restarts int) (took time.Duration, allocs, bytes uint64, err error) {
	var first, last time.Time
	again := make(chan struct{})
	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithLogger(nil), lifecycle.WithDrainDelay(0),
		lifecycle.WithObserver(func(e lifecycle.Event) {
			if e.Kind != lifecycle.EventReady {
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
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	calls := 0 // fn runs once at a time: the failed one has returned before the next starts
	g.Add("worker", lifecycle.Func(func(ctx context.Context) error {
		calls++
		if calls <= restarts {
			return errFail
		}
		<-ctx.Done()
		return nil
	}), lifecycle.Restart(lifecycle.RestartPolicy{MaxRestarts: 1 << 30, Window: time.Second}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-again
		runtime.ReadMemStats(&after)
		cancel()
	}()
	if err := g.Run(ctx); err != nil {
		return 0, 0, 0, err
	}
	if st := g.Status(); st[0].Restarts != restarts {
		return 0, 0, 0, fmt.Errorf("have %d restarts, want %d", st[0].Restarts, restarts)
	}
	return last.Sub(first), after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc, nil
}

// BenchmarkRestart measures supervision: a lifecycle.Func worker fails (its
// function returns an error at once), is stopped, started again with zero
// backoff and ready again, b.N times in one Run. It reports µs, allocations
// and bytes per restart; the allocations include the Group's own, spread
// over b.N restarts.
func BenchmarkRestart(b *testing.B) {
	b.Run("peer=graceful", func(b *testing.B) {
		took, allocs, bytes, err := restartTimes(b.N)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(took.Nanoseconds())/1000/float64(b.N), "µs/restart")
		b.ReportMetric(float64(allocs)/float64(b.N), "allocs/restart")
		b.ReportMetric(float64(bytes)/float64(b.N), "B/restart")
	})
}

// BenchmarkStatus measures one call of Group.Status on a running Group of
// 10 and 1 000 trivial components.
func BenchmarkStatus(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("n=%d/peer=graceful", n), func(b *testing.B) {
			g := newGroup()
			for i := range n {
				g.Add(names[i], newTrivial())
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			<-g.Ready()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for b.Loop() {
				if st := g.Status(); len(st) != n {
					b.Fatalf("have %d statuses, want %d", len(st), n)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/call")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "allocs/call")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N), "B/call")
		})
	}
}

// labelKey is the pprof label the engine puts on each component's
// goroutines.
const labelKey = "lifecycle.component"

// BenchmarkLabels measures, in isolation, the pprof label work the engine
// does for each component it starts and stops (lifecycle/run.go: launch,
// runStart, stopUnit): look up the parent Group's label, build the label set
// and its context (pprof.Labels, pprof.WithLabels), and set the labels on
// the goroutine that runs Start and on the one that runs Stop
// (pprof.SetGoroutineLabels, twice). The engine has no switch to turn them
// off; compare ns/component with BenchmarkStartStop's.
func BenchmarkLabels(b *testing.B) {
	b.Run("peer=graceful", func(b *testing.B) {
		base := context.WithoutCancel(context.Background())
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		i := 0
		for b.Loop() {
			name := names[i%len(names)]
			if parent, ok := pprof.Label(base, labelKey); ok {
				name = parent + "/" + name
			}
			ctx := pprof.WithLabels(base, pprof.Labels(labelKey, name))
			pprof.SetGoroutineLabels(ctx)
			pprof.SetGoroutineLabels(ctx)
			i++
		}
		b.StopTimer()
		runtime.ReadMemStats(&after)
		pprof.SetGoroutineLabels(context.Background())
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/component")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "allocs/component")
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N), "B/component")
	})
}

// TestSupervisionBenchmarks runs the supervision benchmarks' scenarios once,
// small, so that a broken one fails in CI.
func TestSupervisionBenchmarks(t *testing.T) {
	took, allocs, _, err := restartTimes(3)
	if err != nil {
		t.Fatalf("restartTimes(3): have %v, want nil", err)
	}
	if took <= 0 || allocs == 0 {
		t.Errorf("restartTimes(3): have %v and %d allocations, want both positive", took, allocs)
	}
}
