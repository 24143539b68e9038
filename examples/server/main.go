// Command server is the example service of graceful: one process with an
// HTTP server, a gRPC server with the standard health service, a background
// worker and a connection pool, supervised by a lifecycle.Group.
//
//	go run ./examples/server
//
// It serves GET /work (takes -delay), /readyz, /livez and /healthz (an alias
// of /livez) over HTTP, and grpc.health.v1 over gRPC. Once every component is
// ready it prints one line per listener on standard output, for scripts and
// tests:
//
//	listen http 127.0.0.1:8080
//	listen grpc 127.0.0.1:9090
//
// Logs (log/slog, text or JSON) go to standard error. On SIGINT or SIGTERM it
// turns not-ready, keeps serving for -drain-delay, then stops the HTTP and
// gRPC servers, the worker and the pool, in that order, all within
// -shutdown-timeout; a second signal stops at once. The exit status is
// lifecycle.ExitCode of what the Group returned: 0 clean, 1 a component
// failed, 2 invalid flags, 3 the shutdown timed out, 4 a second signal forced
// it.
//
// The defaults are those of a production service behind a load balancer. On
// a laptop, pass -drain-delay=0 or press Ctrl-C twice.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/graceful-go/graceful/grpccomponent"
	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(lifecycle.ExitCode(err))
}

// options are the command-line flags.
type options struct {
	httpAddr        string
	grpcAddr        string
	delay           time.Duration
	drainDelay      time.Duration
	shutdownTimeout time.Duration
	hangStop        bool
	logFormat       string
	logLevel        slog.Level
}

// parseFlags parses args. Its errors match lifecycle.ErrInvalid, so that they
// exit with lifecycle.ExitInvalid, and are printed on stderr with the usage;
// -h returns flag.ErrHelp.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen `address` (port 0 picks a free port)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:9090", "gRPC listen `address` (port 0 picks a free port)")
	fs.DurationVar(&o.delay, "delay", 100*time.Millisecond, "how long GET /work takes")
	fs.DurationVar(&o.drainDelay, "drain-delay", 5*time.Second,
		"how long to keep serving, not ready, after a signal, so that load balancers stop routing here (part of -shutdown-timeout)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second,
		"budget for the whole shutdown, drain delay included; what has not stopped by then is abandoned")
	fs.BoolVar(&o.hangStop, "hang-stop", false, `add a component "stuck" whose Stop never returns, to show the shutdown timeout`)
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text or json")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error (debug logs every connection and /work request)")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return o, err
	case err != nil:
		return o, fmt.Errorf("%w: %w", lifecycle.ErrInvalid, err) // fs has printed it
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.logFormat != "text" && o.logFormat != "json":
		err = fmt.Errorf("-log-format %q is neither text nor json", o.logFormat)
	case o.delay < 0:
		err = fmt.Errorf("-delay %v is negative", o.delay)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return o, fmt.Errorf("%w: %w", lifecycle.ErrInvalid, err)
	}
	return o, nil
}

// run is the whole program but the exit: it returns what the Group's Run
// returned, or a flag error, for main to turn into an exit status.
func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(o, stderr)

	pool := newPool(16, log)
	var served atomic.Int64

	g := lifecycle.New(
		lifecycle.WithShutdownTimeout(o.shutdownTimeout),
		lifecycle.WithDrainDelay(o.drainDelay),
		lifecycle.WithLogger(log),
		lifecycle.WithObserver(func(ev lifecycle.Event) {
			if ev.Kind == lifecycle.EventPhase && ev.Phase == lifecycle.PhaseDraining && o.drainDelay > 0 {
				log.Info("server: draining: /readyz answers 503 while requests are still served, so that load balancers stop routing here; signal again (Ctrl-C) to stop at once",
					"drain_delay", o.drainDelay)
			}
		}),
	)

	// The HTTP server serves /readyz and /livez itself (WithHealth); /healthz
	// is the older name some load balancers are configured with.
	mux := http.NewServeMux()
	mux.Handle("GET /work", workHandler(pool, o.delay, &served, log))
	mux.Handle("GET /healthz", g.LiveHandler())
	httpServer := httpcomponent.New(&http.Server{
		Addr:              o.httpAddr,
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				log.Debug("http: connection accepted", "remote", c.RemoteAddr().String())
			}
		},
	}, httpcomponent.WithHealth(g))
	// The gRPC server has the grpc.health.v1 service: SERVING once the whole
	// Group runs, NOT_SERVING from the first moment of the drain. Register
	// the program's own services on grpcServer.GRPC().
	grpcServer := grpccomponent.New(o.grpcAddr, grpccomponent.WithServingAfter(g))

	// Start order is the order of Add; stop order is the reverse. The pool
	// comes first, so it closes last; the servers come last, so they stop
	// taking requests before the worker and the pool go away.
	g.Add("pool", lifecycle.Hooks(pool.open, pool.close))
	g.Add("worker", lifecycle.Func(worker(pool, &served, time.Second, log)))
	if o.hangStop {
		g.Add("stuck", stuck{})
	}
	g.Add("grpc", grpcServer)
	g.Add("http", httpServer)

	log.Info("server: starting",
		"http_addr", o.httpAddr, "grpc_addr", o.grpcAddr,
		"drain_delay", o.drainDelay, "shutdown_timeout", o.shutdownTimeout, "hang_stop", o.hangStop)
	// Print the bound addresses once everything is ready: with port 0 they
	// are known only then.
	ctx, cancel := context.WithCancel(context.Background())
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		select {
		case <-g.Ready():
			fmt.Fprintf(stdout, "listen http %s\nlisten grpc %s\n", httpServer.Addr(), grpcServer.Addr())
		case <-ctx.Done():
		}
	}()
	err = g.Run(ctx)
	cancel()
	<-printed

	code := lifecycle.ExitCode(err)
	if err != nil {
		log.Error("server: exit", "code", code, "err", err)
	} else {
		log.Info("server: exit", "code", code, "cause", g.Cause())
	}
	return err
}

func newLogger(o options, w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: o.logLevel}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}
