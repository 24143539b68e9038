package benchmarks

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
	"github.com/oklog/run"
	"go.uber.org/fx"
	"golang.org/x/sync/errgroup"
)

// shutdowns are, for each peer (in the order of peers), an idle HTTP server on a loopback port and a
// worker, wired as in cmd/apps but in process, without signals or logs. Each
// function starts them, waits until they are running, then measures the time
// from the request to stop (what a signal would do) until everything has
// returned.
var shutdowns = map[string]func() (time.Duration, error){
	"graceful": gracefulShutdown,
	"oklog":    oklogShutdown,
	"fx":       fxShutdown,
	"errgroup": errgroupShutdown,
}

// idleWorker ticks until ctx is done, like the applications' worker.
func idleWorker(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
	}
}

func gracefulShutdown() (time.Duration, error) {
	g := newGroup()
	g.Add("http", httpcomponent.New("127.0.0.1:0", http.NotFoundHandler(), httpcomponent.WithHealth(g)))
	g.Add("worker", lifecycle.Func(idleWorker))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var at time.Time
	go func() {
		<-g.Ready()
		time.Sleep(time.Millisecond) // let them run
		at = time.Now()
		cancel()
	}()
	err := g.Run(ctx)
	return time.Since(at), err
}

func oklogShutdown() (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	var g run.Group
	var at time.Time
	g.Add(func() error {
		time.Sleep(time.Millisecond) // let the others run
		at = time.Now()
		return nil
	}, func(error) {})
	g.Add(func() error { return srv.Serve(ln) }, func(error) { _ = ln.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error { return idleWorker(ctx) }, func(error) { cancel() })
	_ = g.Run()
	return time.Since(at), nil
}

func fxShutdown() (time.Duration, error) {
	app := fx.New(fx.NopLogger, fx.Invoke(func(lc fx.Lifecycle) {
		srv := &http.Server{Handler: http.NotFoundHandler()}
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					return err
				}
				go func() { _ = srv.Serve(ln) }()
				return nil
			},
			OnStop: func(ctx context.Context) error { return srv.Shutdown(ctx) },
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error {
				go func() { defer close(done); _ = idleWorker(ctx) }()
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
	}))
	if err := app.Start(context.Background()); err != nil {
		return 0, err
	}
	time.Sleep(time.Millisecond) // let them run
	at := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), fx.DefaultTimeout)
	defer cancel()
	err := app.Stop(ctx)
	return time.Since(at), err
}

func errgroupShutdown() (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	g.Go(func() error { return idleWorker(gctx) })
	time.Sleep(time.Millisecond) // let them run
	at := time.Now()
	cancel()
	err = g.Wait()
	return time.Since(at), err
}
