package benchmarks

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// sizes are the numbers of components of BenchmarkStartStop.
var sizes = []int{1, 100, 1000, 10000}

// BenchmarkStartStop starts and stops N trivial components on each peer,
// and on graceful with each kind of component (plain, Func, Worker).
// ns/component, B/component and allocs/component are the cost of one
// component's whole life (add, start, stop), all included, fixed costs of
// the supervisor spread over the N.
func BenchmarkStartStop(b *testing.B) {
	for _, n := range sizes {
		for _, k := range kinds {
			b.Run(fmt.Sprintf("n=%d/kind=%s/peer=graceful", n, k.name), func(b *testing.B) {
				perComponent(b, n, func() error { return gracefulStartStop(k, n) })
			})
		}
		for _, p := range peers {
			b.Run(fmt.Sprintf("n=%d/peer=%s", n, p.name), func(b *testing.B) {
				perComponent(b, n, func() error { return p.startStop(n) })
			})
		}
	}
}

// perComponent runs op (which handles n components) for the benchmark and
// reports its cost per component.
func perComponent(b *testing.B, n int, op func() error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for b.Loop() {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	per := float64(b.N * n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/component")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/component")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/component")
}

// BenchmarkSlowStart starts 20 components that each take 5 ms to become
// ready and need nothing of each other, and reports the time until all are
// ready. graceful runs them in a chain (its default without After: each
// needs the one added before it) and independent (After()); fx starts them
// one after the other whatever they need; oklog/run and errgroup start them
// all at once and know neither order nor readiness.
func BenchmarkSlowStart(b *testing.B) {
	const n, d = 20, 5 * time.Millisecond
	for _, graph := range []string{"chain", "independent"} {
		b.Run("graph="+graph+"/peer=graceful", func(b *testing.B) {
			reportTime(b, "ms-to-ready", time.Millisecond, func() (time.Duration, error) {
				return gracefulSlowStart(n, d, graph == "independent")
			})
		})
	}
	for _, p := range peers {
		b.Run("peer="+p.name, func(b *testing.B) {
			reportTime(b, "ms-to-ready", time.Millisecond, func() (time.Duration, error) { return p.slowStart(n, d) })
		})
	}
}

// BenchmarkStopTwo stops an HTTP and a gRPC server that each have one
// request in flight, which ends 100 ms after its own server was asked to
// stop, and reports the time from the request to stop until everything has
// returned (see stop_test.go). graceful runs them in a chain (the default)
// and independent (After()).
func BenchmarkStopTwo(b *testing.B) {
	const d = 100 * time.Millisecond
	for _, graph := range []string{"chain", "independent"} {
		b.Run("graph="+graph+"/peer=graceful", func(b *testing.B) {
			reportTime(b, "ms-to-stop", time.Millisecond, func() (time.Duration, error) {
				return gracefulStopTwo(d, graph == "independent")
			})
		})
	}
	for _, p := range peers {
		b.Run("peer="+p.name, func(b *testing.B) {
			reportTime(b, "ms-to-stop", time.Millisecond, func() (time.Duration, error) { return p.stopTwo(d) })
		})
	}
}

// BenchmarkShutdown measures the supervisor's share of an idle SIGTERM →
// exit: the time from the request to stop until an idle HTTP server on a
// loopback port and a worker have stopped and the supervisor has returned.
func BenchmarkShutdown(b *testing.B) {
	for _, name := range []string{"graceful", "oklog", "fx", "errgroup"} {
		b.Run("peer="+name, func(b *testing.B) {
			reportTime(b, "µs-to-stop", time.Microsecond, shutdowns[name])
		})
	}
}

// reportTime runs op for the benchmark and reports the mean of the
// durations it returns, in units of unit.
func reportTime(b *testing.B, name string, unit time.Duration, op func() (time.Duration, error)) {
	var total time.Duration
	for b.Loop() {
		took, err := op()
		if err != nil {
			b.Fatal(err)
		}
		total += took
	}
	b.ReportMetric(float64(total)/float64(unit)/float64(b.N), name)
}
