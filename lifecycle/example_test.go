package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

// A service with a pool that must close last and a worker that uses it. The
// Group starts them in order and stops them in reverse. Here the context ends
// the run; in a real main it would be SIGTERM or Ctrl-C.
func Example() {
	g := lifecycle.New(
		lifecycle.WithShutdownTimeout(10*time.Second),
		lifecycle.WithDrainDelay(0),
		lifecycle.WithLogger(nil), // quiet, for the example's output
	)
	g.Add("pool", lifecycle.Hooks(
		func(ctx context.Context) error { fmt.Println("pool: open"); return nil },
		func(ctx context.Context) error { fmt.Println("pool: closed"); return nil },
	))
	ctx, cancel := context.WithCancel(context.Background())
	g.Add("worker", lifecycle.Func(func(ctx context.Context) error {
		fmt.Println("worker: running")
		cancel()     // for the example: the service is asked to stop at once
		<-ctx.Done() // Stop cancels ctx
		fmt.Println("worker: done")
		return nil
	}))

	err := g.Run(ctx)
	fmt.Println("exit code:", lifecycle.ExitCode(err))
	// Output:
	// pool: open
	// worker: running
	// worker: done
	// pool: closed
	// exit code: 0
}

// A component that fails shuts the whole Group down; Run's error names it,
// and ExitCode makes it the process's exit status.
func Example_failure() {
	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithDrainDelay(0), lifecycle.WithLogger(nil))
	g.Add("api", lifecycle.Func(func(ctx context.Context) error {
		<-ctx.Done()
		fmt.Println("api: stopped")
		return nil
	}))
	g.Add("consumer", lifecycle.Func(func(ctx context.Context) error {
		<-g.Ready() // fails once the service is up
		return errors.New("queue unreachable")
	}))

	err := g.Run(context.Background())
	fmt.Println(err)
	fmt.Println("exit code:", lifecycle.ExitCode(err))
	// Output:
	// api: stopped
	// run consumer: queue unreachable
	// exit code: 1
}

// The modules of a monolith each have a Group; one parent runs them. Only the
// parent handles signals and waits the drain delay.
func Example_nested() {
	say := func(name string) lifecycle.Component {
		return lifecycle.Hooks(
			func(context.Context) error { fmt.Println("start", name); return nil },
			func(context.Context) error { fmt.Println("stop", name); return nil },
		)
	}
	billing := lifecycle.New(lifecycle.WithLogger(nil))
	billing.Add("billing-db", say("billing-db"))
	billing.Add("billing-api", say("billing-api"))

	app := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithDrainDelay(0), lifecycle.WithLogger(nil))
	app.Add("config", say("config"))
	app.Add("billing", billing)
	app.Add("http", say("http"))

	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-app.Ready(); cancel() }()
	fmt.Println("err:", app.Run(ctx))
	// Output:
	// start config
	// start billing-db
	// start billing-api
	// start http
	// stop http
	// stop billing-api
	// stop billing-db
	// stop config
	// err: <nil>
}

// ReadyHandler serves a Kubernetes readiness probe: 503 until the Group is
// running, 200 while it runs, 503 again from the first moment of the drain.
func ExampleGroup_ReadyHandler() {
	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithDrainDelay(0), lifecycle.WithLogger(nil))
	probe := func() {
		w := httptest.NewRecorder()
		g.ReadyHandler().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		fmt.Print(w.Code, " ", w.Body.String())
	}
	probe()
	g.Add("server", lifecycle.Func(func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-g.Ready(); probe(); cancel() }()
	g.Run(ctx)
	probe()
	// Output:
	// 503 not ready: idle
	// 200 ok
	// 503 not ready: stopped
}

// ExitCode turns Run's error into the process's exit status.
func ExampleExitCode() {
	timedOut := &lifecycle.ComponentError{Component: "db", Phase: lifecycle.PhaseStopping, Err: lifecycle.ErrTimeout}
	fmt.Println(lifecycle.ExitCode(nil))
	fmt.Println(lifecycle.ExitCode(errors.New("boom")))
	fmt.Println(lifecycle.ExitCode(timedOut), timedOut)
	fmt.Println(lifecycle.ExitCode(errors.Join(lifecycle.ErrForced, timedOut)))
	// Output:
	// 0
	// 1
	// 3 stop db: lifecycle: timed out
	// 4
}
