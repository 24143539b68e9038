package benchmarks

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
	"github.com/oklog/run"
	"go.uber.org/fx"
	"golang.org/x/sync/errgroup"
)

// A peer runs the same scenarios on one supervisor.
//
// startStop starts n trivial components (each a goroutine that blocks until
// it is told to stop, with its own stop channel or context), waits until all
// have started, then stops them all and waits until they have ended.
//
// slowStart does the same with n components that each take d to become
// ready, and returns the time from the beginning of the start until all are
// ready. The components need nothing of each other; a peer that knows no
// dependencies (fx) starts them in order all the same.
//
// stopTwo runs an HTTP and a gRPC server, each with one request in flight
// that ends d after its own server was asked to stop, and returns the time
// from the request to stop until everything has returned (see stop_test.go).
type peer struct {
	name      string
	startStop func(n int) error
	slowStart func(n int, d time.Duration) (time.Duration, error)
	stopTwo   func(d time.Duration) (time.Duration, error)
}

// peers are the libraries graceful is measured against, in table order.
// graceful itself comes in several variants, in variants.
var peers = []peer{
	{"oklog", oklogStartStop, oklogSlowStart, oklogStopTwo},
	{"fx", fxStartStop, fxSlowStart, fxStopTwo},
	{"errgroup", errgroupStartStop, errgroupSlowStart, errgroupStopTwo},
}

// A kind is one way of writing a trivial component with graceful.
type kind struct {
	name  string
	make  func() lifecycle.Component
	after bool // added with After(): needs nothing, starts and stops concurrently
}

// kinds are the components whose start+stop is measured: a Component
// written by hand (Start blocks until Stop), in graceful's default chain and
// independent (After()), lifecycle.Func and lifecycle.Worker.
var kinds = []kind{
	{"plain", func() lifecycle.Component { return newTrivial() }, false},
	{"plain-after", func() lifecycle.Component { return newTrivial() }, true},
	{"func", func() lifecycle.Component {
		return lifecycle.Func(func(ctx context.Context) error {
			<-ctx.Done()
			return nil
		})
	}, false},
	{"worker", func() lifecycle.Component {
		return lifecycle.Worker(func(_ context.Context, stopping <-chan struct{}) error {
			<-stopping
			return nil
		})
	}, false},
}

// trivial is the smallest Component a user can write: Start blocks until
// Stop. It is not a Readier, so it is ready once its Start is called.
type trivial struct{ quit chan struct{} }

func newTrivial() *trivial { return &trivial{quit: make(chan struct{})} }

func (c *trivial) Start(context.Context) error { <-c.quit; return nil }
func (c *trivial) Stop(context.Context) error  { close(c.quit); return nil }

// names holds component names, built once, so that no peer pays for
// formatting them.
var names = func() []string {
	s := make([]string, 10000)
	for i := range s {
		s[i] = "c" + strconv.Itoa(i)
	}
	return s
}()

// newGroup is graceful configured as the issue asks for in-process runs: no
// signals, no logs, no drain delay.
func newGroup() *lifecycle.Group {
	return lifecycle.New(lifecycle.WithSignals(), lifecycle.WithLogger(nil), lifecycle.WithDrainDelay(0))
}

// runUntilReady runs g and cancels its context as soon as it is ready. It
// returns Run's error and the time from Run to ready.
func runUntilReady(g *lifecycle.Group) (time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	var took time.Duration
	go func() {
		<-g.Ready()
		took = time.Since(began)
		cancel()
	}()
	err := g.Run(ctx)
	return took, err
}

// gracefulStartStop adds n components of kind k to a Group, runs it until
// it is ready, and stops it.
func gracefulStartStop(k kind, n int) error {
	g := newGroup()
	var opts []lifecycle.AddOption
	if k.after {
		opts = append(opts, lifecycle.After())
	}
	for i := range n {
		g.Add(names[i], k.make(), opts...)
	}
	_, err := runUntilReady(g)
	return err
}

// gracefulSlowStart starts n components that each take d to be ready: in a
// chain (graceful's default without After: each needs the one added before
// it), or independent (After(): each needs nothing).
func gracefulSlowStart(n int, d time.Duration, independent bool) (time.Duration, error) {
	g := newGroup()
	var opts []lifecycle.AddOption
	if independent {
		opts = append(opts, lifecycle.After())
	}
	for i := range n {
		g.Add(names[i], lifecycle.Hooks(func(context.Context) error {
			time.Sleep(d)
			return nil
		}, nil), opts...)
	}
	return runUntilReady(g)
}

// oklogRun adds to g an actor that returns once started is done, which
// interrupts the others, and runs g.
func oklogRun(g *run.Group, started *sync.WaitGroup) (time.Duration, error) {
	began := time.Now()
	var took time.Duration
	g.Add(func() error {
		started.Wait()
		took = time.Since(began)
		return nil
	}, func(error) {})
	err := g.Run()
	return took, err
}

func oklogStartStop(n int) error {
	var g run.Group
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		quit := make(chan struct{})
		g.Add(func() error {
			started.Done()
			<-quit
			return nil
		}, func(error) {
			close(quit)
		})
	}
	_, err := oklogRun(&g, &started)
	return err
}

func oklogSlowStart(n int, d time.Duration) (time.Duration, error) {
	var g run.Group
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		quit := make(chan struct{})
		g.Add(func() error {
			time.Sleep(d)
			started.Done()
			<-quit
			return nil
		}, func(error) {
			close(quit)
		})
	}
	return oklogRun(&g, &started)
}

// fxRun builds an fx application whose lifecycle gets n hooks from hook, and
// starts and stops it.
func fxRun(n int, hook func() fx.Hook) (time.Duration, error) {
	app := fx.New(fx.NopLogger, fx.Invoke(func(lc fx.Lifecycle) {
		for range n {
			lc.Append(hook())
		}
	}))
	ctx := context.Background()
	began := time.Now()
	if err := app.Start(ctx); err != nil {
		return 0, err
	}
	took := time.Since(began)
	return took, app.Stop(ctx)
}

// fxWorker is the hook of a trivial fx component: OnStart waits d (when it is
// not zero), then starts a goroutine; OnStop ends it and waits for it.
func fxWorker(d time.Duration) fx.Hook {
	quit, done := make(chan struct{}), make(chan struct{})
	return fx.Hook{
		OnStart: func(context.Context) error {
			if d > 0 {
				time.Sleep(d)
			}
			go func() {
				defer close(done)
				<-quit
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			close(quit)
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	}
}

func fxStartStop(n int) error {
	_, err := fxRun(n, func() fx.Hook { return fxWorker(0) })
	return err
}

func fxSlowStart(n int, d time.Duration) (time.Duration, error) {
	return fxRun(n, func() fx.Hook { return fxWorker(d) })
}

func errgroupRun(n int, d time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		g.Go(func() error {
			if d > 0 {
				time.Sleep(d)
			}
			started.Done()
			<-gctx.Done()
			return nil
		})
	}
	started.Wait()
	took := time.Since(began)
	cancel()
	return took, g.Wait()
}

func errgroupStartStop(n int) error {
	_, err := errgroupRun(n, 0)
	return err
}

func errgroupSlowStart(n int, d time.Duration) (time.Duration, error) {
	return errgroupRun(n, d)
}
