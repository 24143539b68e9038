package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/graceful-go/graceful/grpccomponent"
	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
	"github.com/oklog/run"
	"go.uber.org/fx"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The scenario of stopTwo: an HTTP server and a gRPC server, which need
// nothing of each other, each have one request in flight when the stop
// begins. Each request ends d after its own server was asked to stop (a
// long poll, or a job, that finishes once its server stops), so a server's
// stop takes d. Stopped one after the other, the two take 2d; stopped
// concurrently, d. Both requests must succeed: a request lost counts as a
// failed run.

// flight is the in-flight request of one server: began is closed when its
// handler has begun, stopping when its server is asked to stop.
type flight struct {
	d        time.Duration
	began    chan struct{}
	stopping chan struct{}
	stopOnce sync.Once
}

func newFlight(d time.Duration) *flight {
	return &flight{d: d, began: make(chan struct{}), stopping: make(chan struct{})}
}

// stop tells the request that its server is asked to stop.
func (f *flight) stop() { f.stopOnce.Do(func() { close(f.stopping) }) }

// serve is the handler's work: it waits until its server is asked to stop,
// then for d.
func (f *flight) serve() {
	close(f.began)
	<-f.stopping
	time.Sleep(f.d)
}

// pair is the two servers' requests and their clients.
type pair struct {
	http, grpc *flight
	results    chan error // one result per client
}

func newPair(d time.Duration) *pair {
	return &pair{http: newFlight(d), grpc: newFlight(d), results: make(chan error, 2)}
}

// httpHandler serves the in-flight request on every path.
func (p *pair) httpHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.http.serve()
		_, _ = io.WriteString(w, "done")
	})
}

// slowMethod is the gRPC method of the in-flight request, registered by
// hand (no generated code): it takes and returns an Empty.
const slowMethod = "/bench.Slow/Wait"

// register registers the gRPC service that serves the in-flight request.
func (p *pair) register(s *grpc.Server) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "bench.Slow",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Wait",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				if err := dec(new(emptypb.Empty)); err != nil {
					return nil, err
				}
				p.grpc.serve()
				return new(emptypb.Empty), nil
			},
		}},
	}, struct{}{})
}

// send sends one request to each server, in the background; the results
// arrive on p.results. It returns once both handlers have begun, or an
// error if a request failed first.
func (p *pair) send(httpAddr, grpcAddr string) error {
	go func() {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("http://" + httpAddr + "/")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP: status %d", resp.StatusCode)
			}
		}
		p.results <- err
	}()
	go func() {
		cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			err = cc.Invoke(context.Background(), slowMethod, new(emptypb.Empty), new(emptypb.Empty))
			cc.Close()
		}
		p.results <- err
	}()
	for _, f := range []*flight{p.http, p.grpc} {
		select {
		case <-f.began:
		case err := <-p.results:
			if err == nil {
				err = errors.New("a request ended before its handler began")
			}
			return err
		case <-time.After(10 * time.Second):
			return errors.New("the requests did not reach their handlers within 10 s")
		}
	}
	return nil
}

// wait waits for both clients' results.
func (p *pair) wait() error {
	var errs []error
	for range 2 {
		select {
		case err := <-p.results:
			errs = append(errs, err)
		case <-time.After(10 * time.Second):
			return errors.New("a request had no answer 10 s after the stop")
		}
	}
	return errors.Join(errs...)
}

// gracefulStopTwo runs the two servers as httpcomponent and grpccomponent in
// a Group: independent (After()) or in a chain (grpc needs http, the default
// without After). The observer tells each request when its server's stop
// begins.
func gracefulStopTwo(d time.Duration, independent bool) (time.Duration, error) {
	p := newPair(d)
	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithLogger(nil), lifecycle.WithDrainDelay(0),
		lifecycle.WithObserver(func(e lifecycle.Event) {
			if e.Kind != lifecycle.EventStopping {
				return
			}
			switch e.Component {
			case "http":
				p.http.stop()
			case "grpc":
				p.grpc.stop()
			}
		}))
	var opts []lifecycle.AddOption
	if independent {
		opts = append(opts, lifecycle.After())
	}
	hs := httpcomponent.New("127.0.0.1:0", p.httpHandler())
	gs := grpccomponent.New("127.0.0.1:0")
	p.register(gs.GRPC())
	g.Add("http", hs, opts...)
	g.Add("grpc", gs, opts...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var at time.Time
	sent := make(chan error, 1)
	go func() {
		<-g.Ready()
		err := p.send(hs.Addr().String(), gs.Addr().String())
		at = time.Now()
		cancel()
		sent <- err
	}()
	err := g.Run(ctx)
	took := time.Since(at)
	return took, errors.Join(err, <-sent, p.wait())
}

// plainServers are the two servers written by hand, for the peers.
type plainServers struct {
	p        *pair
	http     *http.Server
	grpc     *grpc.Server
	hln, gln net.Listener
}

func newPlainServers(d time.Duration) (*plainServers, error) {
	s := &plainServers{p: newPair(d)}
	s.http = &http.Server{Handler: s.p.httpHandler()}
	s.grpc = grpc.NewServer()
	s.p.register(s.grpc)
	var err error
	if s.hln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if s.gln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		s.hln.Close()
		return nil, err
	}
	return s, nil
}

func (s *plainServers) serveHTTP() error {
	if err := s.http.Serve(s.hln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *plainServers) serveGRPC() error { return s.grpc.Serve(s.gln) }

// stopHTTP and stopGRPC are each server's graceful stop, as a user of the
// peer would write it.
func (s *plainServers) stopHTTP(ctx context.Context) error {
	s.p.http.stop()
	return s.http.Shutdown(ctx)
}

func (s *plainServers) stopGRPC() {
	s.p.grpc.stop()
	s.grpc.GracefulStop()
}

func (s *plainServers) send() error {
	return s.p.send(s.hln.Addr().String(), s.gln.Addr().String())
}

// oklogStopTwo: one actor per server whose interrupt stops it gracefully;
// oklog/run calls the interrupts one after the other, in the order of Add.
func oklogStopTwo(d time.Duration) (time.Duration, error) {
	s, err := newPlainServers(d)
	if err != nil {
		return 0, err
	}
	var g run.Group
	var at time.Time
	var sendErr error
	g.Add(func() error {
		sendErr = s.send()
		at = time.Now()
		return nil
	}, func(error) {})
	g.Add(s.serveHTTP, func(error) { _ = s.stopHTTP(context.Background()) })
	g.Add(s.serveGRPC, func(error) { s.stopGRPC() })
	err = g.Run()
	took := time.Since(at)
	return took, errors.Join(err, sendErr, s.p.wait())
}

// fxStopTwo: one hook per server, as fx's documentation writes them; fx
// runs the OnStop hooks one after the other, in reverse.
func fxStopTwo(d time.Duration) (time.Duration, error) {
	s, err := newPlainServers(d)
	if err != nil {
		return 0, err
	}
	app := fx.New(fx.NopLogger, fx.Invoke(func(lc fx.Lifecycle) {
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error { go s.serveHTTP(); return nil },
			OnStop:  s.stopHTTP,
		})
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error { go s.serveGRPC(); return nil },
			OnStop:  func(context.Context) error { s.stopGRPC(); return nil },
		})
	}))
	if err := app.Start(context.Background()); err != nil {
		return 0, err
	}
	sendErr := s.send()
	at := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), fx.DefaultTimeout)
	defer cancel()
	err = app.Stop(ctx)
	took := time.Since(at)
	return took, errors.Join(err, sendErr, s.p.wait())
}

// errgroupStopTwo: for each server, one goroutine serves and one stops it
// when the group's context is done; both stop concurrently.
func errgroupStopTwo(d time.Duration) (time.Duration, error) {
	s, err := newPlainServers(d)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(s.serveHTTP)
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		return s.stopHTTP(sctx)
	})
	g.Go(s.serveGRPC)
	g.Go(func() error {
		<-gctx.Done()
		s.stopGRPC()
		return nil
	})
	sendErr := s.send()
	at := time.Now()
	cancel()
	err = g.Wait()
	took := time.Since(at)
	return took, errors.Join(err, sendErr, s.p.wait())
}
