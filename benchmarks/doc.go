// Package benchmarks measures graceful against the libraries a user would
// pick instead (github.com/oklog/run, go.uber.org/fx, and errgroup with
// signal.NotifyContext written by hand) on the same work, in the same run.
//
// The in-process benchmarks live in this package's tests:
//
//	go test -run '^$' -bench . -benchmem
//
// BenchmarkStartStop starts and stops N trivial components (N = 1, 100,
// 1 000, 10 000; on graceful a hand-written Component, the same with After(),
// lifecycle.Func and lifecycle.Worker) and reports ns, B and allocs per
// component; BenchmarkSlowStart starts 20 components that each take 5 ms to
// become ready and reports ms-to-ready; BenchmarkStopTwo stops an HTTP and a
// gRPC server that each finish a request and reports ms-to-stop;
// BenchmarkShutdown stops an idle HTTP server and a worker and reports
// µs-to-stop, the supervisor's share of an idle SIGTERM → exit;
// BenchmarkRestart, BenchmarkStatus and BenchmarkLabels measure graceful's
// supervision. The process-level comparison is cmd/compare, driven by
// run.sh, which also prints the tables.
//
// This is a module of its own so that the library's module graph does not
// pull in the peers.
package benchmarks
