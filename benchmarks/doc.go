// Package benchmarks measures graceful against the libraries a user would
// pick instead (github.com/oklog/run, go.uber.org/fx, and errgroup with
// signal.NotifyContext written by hand) on the same work, in the same run.
//
// The in-process benchmarks live in this package's tests:
//
//	go test -run '^$' -bench . -benchmem
//
// BenchmarkStartStop starts and stops N trivial components (N = 10, 1 000,
// 10 000) and reports ns/component and allocs/component; BenchmarkSlowStart
// starts 20 components that each take 5 ms to become ready and reports
// ms-to-ready; BenchmarkShutdown stops an idle HTTP server and a worker and
// reports µs-to-stop, the supervisor's share of an idle SIGTERM → exit. The
// process-level comparison is cmd/compare, driven by run.sh, which also
// prints the table.
//
// This is a module of its own so that the library's module graph does not
// pull in the peers.
package benchmarks
