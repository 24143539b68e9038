// Command errgroup is the benchmark application written by hand with
// golang.org/x/sync/errgroup, signal.NotifyContext and http.Server.Shutdown,
// as a careful user would without a library: the first signal cancels the
// group's context; the server then shuts down within the budget (25 s unless
// -budget says otherwise); the worker returns when the context is done. The
// budget bounds the server only: main waits for every goroutine.
package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/graceful-go/graceful/benchmarks/internal/app"
	"golang.org/x/sync/errgroup"
)

func main() {
	cfg := app.ParseFlags()
	if err := run(cfg); err != nil {
		app.Fatal(err)
	}
}

func run(cfg app.Config) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := app.Listen(cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: app.Handler(cfg.Delay)}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.BudgetOr(25*time.Second))
		defer cancel()
		return srv.Shutdown(sctx)
	})
	g.Go(func() error {
		return app.Worker(gctx, cfg.Hang)
	})
	app.Ready()
	return g.Wait()
}
