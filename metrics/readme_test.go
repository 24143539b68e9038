package metrics_test

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/graceful-go/graceful/lifecycle"
	"github.com/graceful-go/graceful/metrics"
)

// The root README's snippet on metrics, compiled (never run).
func readmeMetrics(mux *http.ServeMux) *lifecycle.Group {
	c := metrics.New()              // registers nothing by itself
	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer, your choice
	reg.MustRegister(c)             // an invalid option is reported here, before anything starts
	g := lifecycle.New(lifecycle.WithObserver(c.Observe))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return g
}

var _ = readmeMetrics
