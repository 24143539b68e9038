// Command oklog is the benchmark application built on github.com/oklog/run,
// written as its README shows: one actor for the signals, one for the HTTP
// server whose interrupt closes the listener, one for the worker whose
// interrupt cancels its context. There is no shutdown budget: Run returns
// when every actor has returned, and main returns then.
package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"syscall"

	"github.com/graceful-go/graceful/benchmarks/internal/app"
	"github.com/oklog/run"
)

func main() {
	cfg := app.ParseFlags()
	ln, err := app.Listen(cfg.Addr)
	if err != nil {
		app.Fatal(err)
	}
	srv := &http.Server{Handler: app.Handler(cfg.Delay)}

	var g run.Group
	g.Add(run.SignalHandler(context.Background(), os.Interrupt, syscall.SIGTERM))
	g.Add(func() error {
		return srv.Serve(ln)
	}, func(error) {
		_ = ln.Close()
	})
	ctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error {
		return app.Worker(ctx, cfg.Hang)
	}, func(error) {
		cancel()
	})
	app.Ready()
	if err := g.Run(); err != nil && !errors.Is(err, run.ErrSignal) {
		app.Fatal(err)
	}
}
