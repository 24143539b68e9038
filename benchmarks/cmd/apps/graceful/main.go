// Command graceful is the benchmark application built on graceful, as a user
// behind a load balancer would write it: a lifecycle.Group with the default
// options (SIGINT and SIGTERM, a 25 s shutdown budget, a 5 s drain delay, logs
// to slog.Default(), unless -budget, -drain or -quiet say otherwise); the
// HTTP server as an httpcomponent.Server, which binds before the Group is
// ready, answers "Connection: close" while draining and serves the Group's
// /readyz and /livez; then the worker as a lifecycle.Func.
package main

import (
	"context"
	"os"

	"github.com/graceful-go/graceful/benchmarks/internal/app"
	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
)

func main() {
	cfg := app.ParseFlags()
	var opts []lifecycle.Option
	if cfg.Budget > 0 {
		opts = append(opts, lifecycle.WithShutdownTimeout(cfg.Budget))
	}
	switch {
	case cfg.Drain >= 0:
		opts = append(opts, lifecycle.WithDrainDelay(cfg.Drain))
	case cfg.Budget > 0 && cfg.Budget <= lifecycle.DefaultDrainDelay:
		// The default drain delay (5 s) must be shorter than the budget:
		// with a short budget, keep a fifth of it.
		opts = append(opts, lifecycle.WithDrainDelay(cfg.Budget/5))
	}
	if cfg.Quiet {
		opts = append(opts, lifecycle.WithLogger(nil))
	}
	g := lifecycle.New(opts...)

	g.Add("http", httpcomponent.New(cfg.Addr, app.Handler(cfg.Delay), httpcomponent.WithHealth(g)))
	g.Add("worker", lifecycle.Func(func(ctx context.Context) error {
		return app.Worker(ctx, cfg.Hang)
	}))

	go func() {
		<-g.Ready()
		app.Ready()
	}()
	os.Exit(lifecycle.ExitCode(g.Run(context.Background())))
}
