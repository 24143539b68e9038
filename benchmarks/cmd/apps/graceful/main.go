// Command graceful is the benchmark application built on graceful's
// lifecycle package, as a user behind a load balancer would write it: the
// default options (SIGINT and SIGTERM, a 25 s shutdown budget and a 5 s drain
// delay, logs to slog.Default(), unless -budget, -drain or -quiet say
// otherwise), /readyz served from the Group's readiness, the server added
// before the worker.
package main

import (
	"context"
	"errors"
	"net/http"
	"os"

	"github.com/graceful-go/graceful/benchmarks/internal/app"
	"github.com/graceful-go/graceful/lifecycle"
)

func main() {
	cfg := app.ParseFlags()
	var opts []lifecycle.Option
	if cfg.Budget > 0 {
		opts = append(opts, lifecycle.WithShutdownTimeout(cfg.Budget))
	}
	if cfg.Drain >= 0 {
		opts = append(opts, lifecycle.WithDrainDelay(cfg.Drain))
	}
	if cfg.Quiet {
		opts = append(opts, lifecycle.WithLogger(nil))
	}
	g := lifecycle.New(opts...)

	ln, err := app.Listen(cfg.Addr)
	if err != nil {
		app.Fatal(err)
	}
	mux := app.Handler(cfg.Delay)
	mux.Handle("/readyz", g.ReadyHandler())
	srv := &http.Server{Handler: mux}
	budget := cfg.BudgetOr(lifecycle.DefaultShutdownTimeout)
	_ = g.Add("http", lifecycle.Func(func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		err := srv.Shutdown(sctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = srv.Close()
		}
		return err
	}))
	_ = g.Add("worker", lifecycle.Func(func(ctx context.Context) error {
		return app.Worker(ctx, cfg.Hang)
	}))

	go func() {
		<-g.Ready()
		app.Ready()
	}()
	os.Exit(lifecycle.ExitCode(g.Run(context.Background())))
}
