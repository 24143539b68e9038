// Command server is the example service of graceful: one process with a
// database, a job queue in it with a worker, an HTTP server and a gRPC server
// with the standard health service, supervised by a lifecycle.Group.
//
//	go run ./examples/server
//
// The database is SQLite, in the file graceful-example.db of the working
// directory (-db-path, or -db sqlite:FILE, moves it), through a pure-Go
// driver, so nothing needs installing; -db postgres://... uses PostgreSQL
// (pgx) instead. Two processes may share either.
//
// It serves, over HTTP, POST /jobs (a count, or one JSON payload: enqueues
// jobs, answers their ids), GET /jobs/stats, GET /work (holds a database
// connection for -delay), /readyz, /livez and /healthz (an alias of /livez);
// over gRPC, grpc.health.v1 and graceful.example.Jobs (Enqueue, Stats). The
// worker claims one job at a time, works on it for -job-time (or the
// payload's "duration"), and marks it done. Once every component is ready it
// prints one line per listener on standard output, for scripts and tests:
//
//	listen http 127.0.0.1:8080
//	listen grpc 127.0.0.1:9090
//
// Logs (log/slog, text or JSON) go to standard error. On SIGINT or SIGTERM it
// turns not-ready, keeps serving for -drain-delay, then stops the HTTP and
// gRPC servers, the worker and the database, in that order, all within
// -shutdown-timeout; a second signal stops at once. The worker claims nothing
// new once told to stop, finishes the job in hand within
// -worker-stop-timeout, or else releases it back to the queue. The exit
// status is lifecycle.ExitCode of what the Group returned: 0 clean, 1 a
// component failed, 2 invalid flags, 3 the shutdown timed out, 4 a second
// signal forced it.
//
// Under systemd it needs no flag: with $NOTIFY_SOCKET set it tells systemd
// when it is ready and stopping (Type=notify) and pings its watchdog; when
// socket-activated it serves on the sockets named "http" and "grpc" instead
// of binding -http-addr and -grpc-addr (see deploy/).
//
// The defaults are those of a production service behind a load balancer. On
// a laptop, pass -drain-delay=0 or press Ctrl-C twice.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/graceful-go/graceful/grpccomponent"
	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
	"github.com/graceful-go/graceful/metrics"
	"github.com/graceful-go/graceful/systemd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(lifecycle.ExitCode(err))
}

// options are the command-line flags.
type options struct {
	httpAddr          string
	grpcAddr          string
	delay             time.Duration
	drainDelay        time.Duration
	shutdownTimeout   time.Duration
	hangStop          bool
	logFormat         string
	logLevel          slog.Level
	db                dbConfig
	queue             string
	jobTime           time.Duration
	workerStopTimeout time.Duration
	lease             time.Duration
	poll              time.Duration
}

// parseFlags parses args. Its errors match lifecycle.ErrInvalid, so that they
// exit with lifecycle.ExitInvalid, and are printed on stderr with the usage;
// -h returns flag.ErrHelp.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var db, dbPath string
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen `address` (port 0 picks a free port)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:9090", "gRPC listen `address` (port 0 picks a free port)")
	fs.DurationVar(&o.delay, "delay", 100*time.Millisecond, "how long GET /work holds a database connection")
	fs.DurationVar(&o.drainDelay, "drain-delay", 5*time.Second,
		"how long to keep serving, not ready, after a signal, so that load balancers stop routing here (part of -shutdown-timeout)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second,
		"budget for the whole shutdown, drain delay included; what has not stopped by then is abandoned")
	fs.BoolVar(&o.hangStop, "hang-stop", false, `add a component "stuck" whose Stop never returns, to show the shutdown timeout`)
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text or json")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error (debug logs every connection, /work request and job claim)")
	fs.StringVar(&db, "db", "", "the `database`: empty for SQLite in -db-path, sqlite:FILE, or a postgres:// DSN (PostgreSQL through pgx)")
	fs.StringVar(&dbPath, "db-path", "graceful-example.db", "the SQLite database `file` (created if missing), when -db is empty")
	fs.StringVar(&o.queue, "queue", "default", "the job queue's `name`: processes with the same database and name share the queue")
	fs.DurationVar(&o.jobTime, "job-time", 200*time.Millisecond, `how long a job takes, unless its payload says {"duration":"..."}`)
	fs.DurationVar(&o.workerStopTimeout, "worker-stop-timeout", 3*time.Second,
		"the worker's stop budget: how long it may go on with the job in hand after it is told to stop; then it releases the job back to the queue (the shutdown deadline cuts it short)")
	fs.DurationVar(&o.lease, "lease", 15*time.Second,
		"how long a claimed job stays claimed without a sign of life (the worker renews it every third of it); a job whose lease expired, left by a process that died, is claimed again")
	fs.DurationVar(&o.poll, "poll", 500*time.Millisecond, "how often an idle worker looks for jobs that other processes enqueued")
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
	case o.jobTime < 0:
		err = fmt.Errorf("-job-time %v is negative", o.jobTime)
	case o.workerStopTimeout <= 0:
		err = fmt.Errorf("-worker-stop-timeout %v is not positive", o.workerStopTimeout)
	case o.lease < 30*time.Millisecond:
		err = fmt.Errorf("-lease %v is shorter than 30ms", o.lease)
	case o.poll <= 0:
		err = fmt.Errorf("-poll %v is not positive", o.poll)
	case o.queue == "":
		err = errors.New("-queue is empty")
	}
	if err == nil {
		o.db, err = parseDB(db, dbPath)
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
	runID := newRunID()

	db := newDatabase(o.db, log)
	q := newQueue(db, o.queue, o.lease)
	w := &jobWorker{q: q, runID: runID, jobTime: o.jobTime, poll: o.poll, log: log}

	// Under systemd, both automatic and no-ops otherwise: the listening
	// sockets of socket activation, by name ("http", "grpc"; a server whose
	// socket was not passed binds its flag's address), and the notify
	// protocol (READY=1, STOPPING=1, STATUS=, EXTEND_TIMEOUT_USEC, WATCHDOG=1)
	// when $NOTIFY_SOCKET is set. See systemd.go and deploy/.
	sockets, err := activation(log)
	if err != nil {
		log.Error("server: socket activation", "err", err)
		return err
	}
	defer sockets.close()

	// The Group's lifecycle as Prometheus metrics, served on GET /metrics
	// with the Go runtime's and the process's own.
	lm := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(lm, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	g := lifecycle.New(
		systemd.Notify(systemd.WithLogger(log)),
		lifecycle.WithObserver(lm.Observe),
		lifecycle.WithShutdownTimeout(o.shutdownTimeout),
		lifecycle.WithDrainDelay(o.drainDelay),
		lifecycle.WithLogger(log),
	)

	// The HTTP server serves /readyz and /livez itself (WithHealth); /healthz
	// is the older name some load balancers are configured with.
	mux := http.NewServeMux()
	mux.Handle("GET /work", workHandler(db, o.delay, log))
	mux.Handle("POST /jobs", enqueueHandler(q, log))
	mux.Handle("GET /jobs/stats", statsHandler(q, log))
	mux.Handle("GET /healthz", g.LiveHandler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	httpServer := httpcomponent.New(o.httpAddr, mux, httpcomponent.WithHealth(g), httpcomponent.WithListener(sockets.http),
		httpcomponent.WithConnState(func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				log.Debug("http: connection accepted", "remote", c.RemoteAddr().String())
			}
		}))
	httpServer.HTTP().ReadHeaderTimeout = 5 * time.Second
	httpServer.HTTP().IdleTimeout = time.Minute
	// The gRPC server has the grpc.health.v1 service: SERVING once the whole
	// Group runs, NOT_SERVING from the first moment of the drain.
	grpcServer := grpccomponent.New(o.grpcAddr, grpccomponent.WithHealth(g), grpccomponent.WithListener(sockets.grpc))
	grpcServer.GRPC().RegisterService(&jobsDesc, &jobsServer{q: q, log: log})

	// The database is needed by everything, so it opens first and closes
	// last, once everything that uses it has stopped. The worker and the two
	// servers need only the database: they start together once it is open,
	// and stop together (the servers finish their requests while the worker
	// finishes the job in hand, within its own stop timeout).
	g.Add("db", lifecycle.Hooks(db.open, db.close))
	g.Add("worker", lifecycle.Worker(w.run), lifecycle.After("db"),
		lifecycle.StopTimeout(min(o.workerStopTimeout, o.shutdownTimeout)))
	if o.hangStop {
		g.Add("stuck", stuck{}, lifecycle.After("db"))
	}
	g.Add("grpc", grpcServer, lifecycle.After("db"))
	g.Add("http", httpServer, lifecycle.After("db"))

	log.Info("server: starting", "run_id", runID,
		"http_addr", o.httpAddr, "grpc_addr", o.grpcAddr, "db", o.db.show, "queue", o.queue,
		"drain_delay", o.drainDelay, "shutdown_timeout", o.shutdownTimeout,
		"worker_stop_timeout", o.workerStopTimeout, "job_time", o.jobTime, "lease", o.lease, "hang_stop", o.hangStop)
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

// newRunID returns a random id for this run of the program: every job it
// completes is recorded with it.
func newRunID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func newLogger(o options, w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: o.logLevel}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}
