package benchmarks

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkStartStop starts and stops N trivial components on each peer.
// ns/component and allocs/component are the cost of one component's whole
// life (add, start, stop), all included.
func BenchmarkStartStop(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		for _, p := range peers {
			b.Run(fmt.Sprintf("n=%d/peer=%s", n, p.name), func(b *testing.B) {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.ResetTimer()
				for b.Loop() {
					if err := p.startStop(n); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				runtime.ReadMemStats(&after)
				per := float64(b.N * n)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/component")
				b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/component")
				b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/component")
			})
		}
	}
}

// BenchmarkSlowStart starts 20 components that each take 5 ms to become
// ready, and reports the time until all are ready. graceful and fx start
// them one after the other, in order; oklog/run and errgroup start them all
// at once and know no order.
func BenchmarkSlowStart(b *testing.B) {
	const n, d = 20, 5 * time.Millisecond
	for _, p := range peers {
		b.Run("peer="+p.name, func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				took, err := p.slowStart(n, d)
				if err != nil {
					b.Fatal(err)
				}
				total += took
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-to-ready")
		})
	}
}

// BenchmarkShutdown measures the supervisor's share of an idle SIGTERM →
// exit: the time from the request to stop until an idle HTTP server on a
// loopback port and a worker have stopped and the supervisor has returned.
func BenchmarkShutdown(b *testing.B) {
	for _, p := range peers {
		b.Run("peer="+p.name, func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				took, err := shutdowns[p.name]()
				if err != nil {
					b.Fatal(err)
				}
				total += took
			}
			b.ReportMetric(float64(total.Nanoseconds())/1000/float64(b.N), "µs-to-stop")
		})
	}
}
