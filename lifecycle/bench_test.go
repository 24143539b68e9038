package lifecycle

import (
	"context"
	"runtime"
	"strconv"
	"testing"
)

// benchComp is a no-op component: Start blocks until Stop. It can be run
// again after it stopped, so one set serves every iteration of a benchmark
// and the figures are the Group's alone.
type benchComp struct{ quit chan struct{} }

func newBenchComp() *benchComp { return &benchComp{quit: make(chan struct{}, 1)} }

func (c *benchComp) Start(context.Context) error { <-c.quit; return nil }

func (c *benchComp) Stop(context.Context) error {
	select {
	case c.quit <- struct{}{}:
	default:
	}
	return nil
}

// benchStartStop runs a Group of comps until it is running, then cancels it.
func benchStartStop(b *testing.B, names []string, comps []*benchComp) {
	g := New(WithSignals(), WithLogger(nil), WithDrainDelay(0))
	for i, c := range comps {
		g.Add(names[i], c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-g.Ready()
		cancel()
	}()
	if err := g.Run(ctx); err != nil {
		b.Fatal(err)
	}
	cancel()
}

// BenchmarkStartStop starts and stops N no-op components in a Group. Besides
// the figures per run (per op), it reports them per component: the target is
// under 2 µs and under 1 KiB a component, the same for every N.
func BenchmarkStartStop(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			names := make([]string, n)
			comps := make([]*benchComp, n)
			for i := range comps {
				names[i] = "c" + strconv.Itoa(i)
				comps[i] = newBenchComp()
			}
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			runs := 0
			for b.Loop() {
				benchStartStop(b, names, comps)
				runs++
			}
			runtime.ReadMemStats(&after)
			per := float64(runs * n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/component")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/component")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/component")
		})
	}
}
