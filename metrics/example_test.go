package metrics_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/graceful-go/graceful/lifecycle"
	"github.com/graceful-go/graceful/metrics"
)

// A Collector registered with the program's own registry, fed by a Group's
// events, and served on /metrics.
func Example() {
	c := metrics.New(metrics.WithConstLabels(prometheus.Labels{"service": "billing"}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithDrainDelay(0), lifecycle.WithLogger(nil),
		lifecycle.WithObserver(c.Observe))
	g.Add("worker", lifecycle.Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-g.Ready()
	cancel()
	fmt.Println("Run:", <-done)

	// What Prometheus would scrape, for the lines of interest.
	rr := httptest.NewRecorder()
	mux.ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(rr.Body.String()) {
		if strings.HasPrefix(line, `graceful_phase{phase="stopped"`) ||
			strings.HasPrefix(line, `graceful_component_state{component="worker",service="billing",state="stopped"`) ||
			strings.HasPrefix(line, `graceful_shutdowns_total{cause="context"`) {
			fmt.Print(line)
		}
	}
	// Output:
	// Run: <nil>
	// graceful_component_state{component="worker",service="billing",state="stopped"} 1
	// graceful_phase{phase="stopped",service="billing"} 1
	// graceful_shutdowns_total{cause="context",service="billing"} 1
}
