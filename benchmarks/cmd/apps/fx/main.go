// Command fx is the benchmark application built on go.uber.org/fx, written as
// fx's documentation shows: the server's OnStart hook binds the listener and
// serves in the background, its OnStop hook calls http.Server.Shutdown; the
// worker's hooks start a goroutine and cancel it. app.Run handles SIGINT and
// SIGTERM and stops within fx's StopTimeout (its default, 15 s, unless
// -budget says otherwise). fx's default logger writes every step to stderr
// (-quiet sets fx.NopLogger).
package main

import (
	"context"
	"net/http"

	"github.com/graceful-go/graceful/benchmarks/internal/app"
	"go.uber.org/fx"
)

func main() {
	cfg := app.ParseFlags()
	opts := []fx.Option{
		fx.Supply(cfg),
		fx.Invoke(server, worker),
		fx.Invoke(func(lc fx.Lifecycle) {
			lc.Append(fx.Hook{OnStart: func(context.Context) error { app.Ready(); return nil }})
		}),
	}
	if cfg.Quiet {
		opts = append(opts, fx.NopLogger)
	}
	if cfg.Budget > 0 {
		opts = append(opts, fx.StopTimeout(cfg.Budget))
	}
	fx.New(opts...).Run()
}

func server(lc fx.Lifecycle, cfg app.Config) {
	srv := &http.Server{Handler: app.Handler(cfg.Delay)}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := app.Listen(cfg.Addr)
			if err != nil {
				return err
			}
			go func() { _ = srv.Serve(ln) }()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			return srv.Shutdown(ctx)
		},
	})
}

func worker(lc fx.Lifecycle, cfg app.Config) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				defer close(done)
				_ = app.Worker(ctx, cfg.Hang)
			}()
			return nil
		},
		OnStop: func(stop context.Context) error {
			cancel()
			select {
			case <-done:
				return nil
			case <-stop.Done():
				return stop.Err()
			}
		},
	})
}
