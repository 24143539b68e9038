package httpcomponent

import (
	"context"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchTarget is a server under benchmark and the keep-alive clients that
// load it.
type benchTarget struct {
	url     string
	clients []*http.Client
	elapsed time.Duration
	n       int
}

func newBenchTarget(b *testing.B, addr string, workers int) *benchTarget {
	bt := &benchTarget{url: "http://" + addr + "/"}
	for range workers {
		tr := &http.Transport{MaxIdleConnsPerHost: 1}
		b.Cleanup(tr.CloseIdleConnections)
		bt.clients = append(bt.clients, &http.Client{Transport: tr})
	}
	return bt
}

// run sends n requests, spread over the workers, adds the time they took, and
// returns it.
func (bt *benchTarget) run(b *testing.B, n int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for _, c := range bt.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				resp, err := c.Get(bt.url)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	bt.elapsed += took
	bt.n += n
	return took
}

func (bt *benchTarget) rate() float64 { return float64(bt.n) / bt.elapsed.Seconds() }

// BenchmarkThroughput measures requests per second through the component and
// through a bare http.Server on the same handler, in the same run: each op is
// one request to each, sent in rounds that alternate between the two so that
// both see the same machine. The metric "ratio" is the median, over pairs of
// adjacent rounds, of the component's rate over the bare server's: on a shared
// machine a burst of other work then skews one pair, not the result.
func BenchmarkThroughput(b *testing.B) {
	const (
		workers = 4
		round   = 200
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	bareSrv := &http.Server{Handler: h}
	bareDone := make(chan struct{})
	go func() {
		defer close(bareDone)
		_ = bareSrv.Serve(ln)
	}()
	defer func() {
		_ = bareSrv.Close()
		<-bareDone
	}()

	comp := newServer(h)
	compDone := make(chan error, 1)
	go func() { compDone <- comp.Start(context.Background()) }()
	<-comp.Ready()
	defer func() {
		_ = comp.Stop(context.Background())
		<-compDone
	}()

	bare := newBenchTarget(b, ln.Addr().String(), workers)
	component := newBenchTarget(b, comp.Addr().String(), workers)
	bare.run(b, workers) // open the connections
	component.run(b, workers)
	bare.elapsed, bare.n, component.elapsed, component.n = 0, 0, 0, 0

	var ratios []float64
	b.ResetTimer()
	for done, i := 0, 0; done < b.N; i++ {
		n := min(round, b.N-done)
		var tb, tc time.Duration
		if i%2 == 0 {
			tb = bare.run(b, n)
			tc = component.run(b, n)
		} else {
			tc = component.run(b, n)
			tb = bare.run(b, n)
		}
		ratios = append(ratios, tb.Seconds()/tc.Seconds())
		done += n
	}
	b.StopTimer()
	sort.Float64s(ratios)
	b.ReportMetric(bare.rate(), "bare-req/s")
	b.ReportMetric(component.rate(), "component-req/s")
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
}

// BenchmarkStopAfterLastRequest measures the time from the end of the last
// in-flight request to the return of Stop, and of a plain
// http.Server.Shutdown, when that request ends 100 ms after the shutdown
// began. The metric is "ms-after-last".
func BenchmarkStopAfterLastRequest(b *testing.B) {
	const requestLeft = 100 * time.Millisecond
	for _, tc := range []struct {
		name string
		// serve starts a server with h on ln, which calls began when its
		// stop has closed the listener, and returns a function that shuts
		// it down gracefully, blocking until it has.
		serve func(h http.Handler, began func(), ln net.Listener) (stop func())
	}{
		{"component", func(h http.Handler, began func(), ln net.Listener) func() {
			s := New("", h, WithListener(ln))
			// Not RegisterOnShutdown: the component calls Shutdown once the
			// HTTP/1 requests in flight have ended.
			s.testListenerClosed = began
			done := make(chan error, 1)
			go func() { done <- s.Start(context.Background()) }()
			<-s.Ready()
			return func() {
				_ = s.Stop(context.Background())
				<-done
			}
		}},
		{"Shutdown", func(h http.Handler, began func(), ln net.Listener) func() {
			srv := &http.Server{Handler: h}
			srv.RegisterOnShutdown(began) // Shutdown closes the listener first
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = srv.Serve(ln)
			}()
			return func() {
				_ = srv.Shutdown(context.Background())
				<-done
			}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				entered, release := make(chan struct{}), make(chan struct{})
				var finished time.Time
				h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					close(entered)
					<-release
					_, _ = io.WriteString(w, "done")
					finished = time.Now() // read after stop has returned
				})
				shutdownBegan := make(chan struct{})
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				stop := tc.serve(h, func() { close(shutdownBegan) }, ln)
				tr := &http.Transport{}
				c := &http.Client{Transport: tr}
				resp := make(chan error, 1)
				go func() {
					r, err := c.Get("http://" + ln.Addr().String())
					if err == nil {
						_, err = io.Copy(io.Discard, r.Body)
						r.Body.Close()
					}
					resp <- err
				}()
				<-entered
				stopped := make(chan time.Time, 1)
				go func() {
					stop()
					stopped <- time.Now()
				}()
				<-shutdownBegan
				t := time.AfterFunc(requestLeft, func() { close(release) })
				at := <-stopped
				t.Stop()
				if err := <-resp; err != nil {
					b.Fatal(err)
				}
				tr.CloseIdleConnections()
				total += at.Sub(finished)
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-after-last")
		})
	}
}
