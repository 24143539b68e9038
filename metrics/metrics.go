// Package metrics exports the lifecycle of a [lifecycle.Group] as Prometheus
// metrics: the Group's phase, each component's state, how long components
// take to start and to stop, restarts, abandoned components, and what began
// each shutdown.
//
// A [Collector] is fed by the Group's events and is a prometheus.Collector:
//
//	c := metrics.New()
//	reg.MustRegister(c) // a registry of the program's; the package registers nothing itself
//	g := lifecycle.New(lifecycle.WithObserver(c.Observe))
//
// It lives in a module of its own so that the library's go.mod does not
// depend on the Prometheus client.
//
// # Series
//
//	graceful_phase{phase}                                 gauge, 1 for the current phase, 0 for the others
//	graceful_component_state{component,state}             gauge, 1 for the component's current state
//	graceful_component_start_duration_seconds{component}  histogram, from Start called to ready
//	graceful_component_stop_duration_seconds{component}   histogram, from Stop called to stopped (abandoned stops are not observed)
//	graceful_component_restarts_total{component}          counter
//	graceful_component_abandoned_total{component}         counter, Stops (or Drains) that did not return in time
//	graceful_shutdowns_total{cause}                       counter, by what began the shutdown (see [CauseSignal] and the others)
//	graceful_shutdowns_forced_total                       counter, shutdowns cut short by a repeated signal
//	graceful_shutdown_duration_seconds                    histogram, from the shutdown's beginning to phase stopped
//
// The phase label takes the values of [lifecycle.Phase.String] (idle,
// starting, running, draining, stopping, stopped); the state label those of
// the State constants ([StateStarting], ...).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/graceful-go/graceful/lifecycle"
)

// The values of the state label of graceful_component_state.
const (
	StateStarting   = "starting"   // Start was called; not ready yet
	StateRunning    = "running"    // ready
	StateFailed     = "failed"     // Start returned (an error, a panic, or early) while it should have run; or gave up restarting
	StateRestarting = "restarting" // waiting to be started again
	StateStopping   = "stopping"   // Stop was called
	StateStopped    = "stopped"    // Stop and Start have returned
	StateAbandoned  = "abandoned"  // its Stop (or Start after Stop, or Drain) did not return in time
)

var states = []string{StateStarting, StateRunning, StateFailed, StateRestarting, StateStopping, StateStopped, StateAbandoned}

// The values of the cause label of graceful_shutdowns_total.
const (
	CauseSignal    = "signal"    // a signal (a [*lifecycle.SignalError])
	CauseContext   = "context"   // the context passed to Run was cancelled or its deadline passed
	CauseFailure   = "failure"   // a component failed: an error, a panic, an early return, a start timeout
	CauseRequested = "requested" // the program asked: Stop, Shutdown, or a context cancelled with a cause of its own
)

// DefaultBuckets are the buckets, in seconds, of the duration histograms:
// from 1 ms to a minute, which covers a start timeout and a shutdown budget.
var DefaultBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60}

// An Option configures a Collector; pass options to [New].
type Option func(*config)

type config struct {
	labels  prometheus.Labels
	buckets []float64
}

// WithConstLabels adds labels with fixed values to every series, to tell the
// Groups of one process apart (for example {"group": "api"}). A label that
// clashes with the Collector's own (phase, component, state, cause) or is not
// a valid name is reported when the Collector is registered.
func WithConstLabels(l prometheus.Labels) Option {
	return func(c *config) { c.labels = l }
}

// WithBuckets sets the buckets, in seconds, of the duration histograms. They
// must be finite and increasing, else registering the Collector fails with an
// error that says so. The default is [DefaultBuckets].
func WithBuckets(b []float64) Option {
	return func(c *config) { c.buckets = b }
}

// Collector turns a Group's events into Prometheus metrics. Create it with
// [New], pass its Observe method to [lifecycle.WithObserver], and register it
// with a registry. It is safe for concurrent use.
type Collector struct {
	err error // a configuration error, reported by Describe and Collect

	phase       *prometheus.GaugeVec
	state       *prometheus.GaugeVec
	startDur    *prometheus.HistogramVec
	stopDur     *prometheus.HistogramVec
	restarts    *prometheus.CounterVec
	abandoned   *prometheus.CounterVec
	shutdowns   *prometheus.CounterVec
	forced      prometheus.Counter
	shutdownDur prometheus.Histogram

	mu         sync.Mutex
	current    map[string]string // component → its state
	shutdownAt time.Time         // when the shutdown being timed began
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector configured by opts. It registers nothing: register
// it with the registry of your choice. An invalid option makes registration
// (Describe) fail with an error that names it.
func New(opts ...Option) *Collector {
	cfg := config{buckets: DefaultBuckets}
	for _, opt := range opts {
		opt(&cfg)
	}
	c := &Collector{current: make(map[string]string)}
	if err := checkBuckets(cfg.buckets); err != nil {
		c.err = err
		cfg.buckets = DefaultBuckets
	}
	cl := cfg.labels
	c.phase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "graceful_phase", ConstLabels: cl,
		Help: "The phase of the Group: 1 for the current phase, 0 for the others.",
	}, []string{"phase"})
	c.state = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "graceful_component_state", ConstLabels: cl,
		Help: "The state of each component: 1 for its current state, 0 for the others.",
	}, []string{"component", "state"})
	c.startDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "graceful_component_start_duration_seconds", ConstLabels: cl, Buckets: cfg.buckets,
		Help: "How long components took to be ready, from the call of Start.",
	}, []string{"component"})
	c.stopDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "graceful_component_stop_duration_seconds", ConstLabels: cl, Buckets: cfg.buckets,
		Help: "How long components took to stop, from the call of Stop until Stop and Start had returned; abandoned stops are not observed.",
	}, []string{"component"})
	c.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "graceful_component_restarts_total", ConstLabels: cl,
		Help: "Restarts of each component by its restart policy.",
	}, []string{"component"})
	c.abandoned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "graceful_component_abandoned_total", ConstLabels: cl,
		Help: "Stops, Drains or Starts after Stop of each component that did not return within the shutdown budget.",
	}, []string{"component"})
	c.shutdowns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "graceful_shutdowns_total", ConstLabels: cl,
		Help: "Shutdowns begun, by cause: signal, context, failure or requested.",
	}, []string{"cause"})
	c.forced = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "graceful_shutdowns_forced_total", ConstLabels: cl,
		Help: "Shutdowns cut short by a repeated signal.",
	})
	c.shutdownDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "graceful_shutdown_duration_seconds", ConstLabels: cl, Buckets: cfg.buckets,
		Help: "How long shutdowns took, from their beginning until every component had stopped or was abandoned.",
	})
	for _, cause := range []string{CauseSignal, CauseContext, CauseFailure, CauseRequested} {
		c.shutdowns.WithLabelValues(cause)
	}
	c.setPhase(lifecycle.PhaseIdle)
	return c
}

func checkBuckets(b []float64) error {
	if len(b) == 0 {
		return errors.New("metrics: WithBuckets: no bucket")
	}
	for i, v := range b {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("metrics: WithBuckets: bucket %d is %v, not finite", i, v)
		}
		if i > 0 && v <= b[i-1] {
			return fmt.Errorf("metrics: WithBuckets: buckets not increasing: %v after %v", v, b[i-1])
		}
	}
	return nil
}

func (c *Collector) all() []prometheus.Collector {
	return []prometheus.Collector{c.phase, c.state, c.startDur, c.stopDur, c.restarts,
		c.abandoned, c.shutdowns, c.forced, c.shutdownDur}
}

// Describe sends the descriptions of the Collector's series, or an invalid
// description carrying the configuration error. Part of prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	if c.err != nil {
		ch <- prometheus.NewInvalidDesc(c.err)
		return
	}
	for _, m := range c.all() {
		m.Describe(ch)
	}
}

// Collect sends the current value of every series, as one consistent
// snapshot. Part of prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.err != nil {
		ch <- prometheus.NewInvalidMetric(prometheus.NewInvalidDesc(c.err), c.err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.all() {
		m.Collect(ch)
	}
}

// Observe updates the metrics with one event of the Group. It is the observer
// for [lifecycle.WithObserver]; it does not block beyond a short lock.
func (c *Collector) Observe(ev lifecycle.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := ev.Component
	switch ev.Kind {
	case lifecycle.EventPhase:
		c.setPhase(ev.Phase)
		if ev.Phase == lifecycle.PhaseStopped && !c.shutdownAt.IsZero() {
			c.shutdownDur.Observe(ev.Time.Sub(c.shutdownAt).Seconds())
			c.shutdownAt = time.Time{}
		}
	case lifecycle.EventShutdown:
		c.shutdowns.WithLabelValues(Cause(ev.Err)).Inc()
		c.shutdownAt = ev.Time
	case lifecycle.EventForced:
		c.forced.Inc()
	case lifecycle.EventStarting:
		c.setState(name, StateStarting)
	case lifecycle.EventReady:
		c.setState(name, StateRunning)
		c.startDur.WithLabelValues(name).Observe(ev.Duration.Seconds())
	case lifecycle.EventExited:
		// A Start that returns while its component is being stopped, or
		// after, ends the stop; one that returns before is a failure.
		switch c.current[name] {
		case StateStopping, StateStopped, StateAbandoned:
		default:
			c.setState(name, StateFailed)
		}
	case lifecycle.EventStopping:
		c.setState(name, StateStopping)
	case lifecycle.EventStopped:
		c.setState(name, StateStopped)
		c.stopDur.WithLabelValues(name).Observe(ev.Duration.Seconds())
	case lifecycle.EventAbandoned:
		c.setState(name, StateAbandoned)
		c.abandoned.WithLabelValues(name).Inc()
	case lifecycle.EventRestarting:
		c.setState(name, StateRestarting)
		c.restarts.WithLabelValues(name).Inc()
	case lifecycle.EventGaveUp:
		c.setState(name, StateFailed)
	}
}

func (c *Collector) setPhase(p lifecycle.Phase) {
	for q := lifecycle.PhaseIdle; q <= lifecycle.PhaseStopped; q++ {
		v := 0.0
		if q == p {
			v = 1
		}
		c.phase.WithLabelValues(q.String()).Set(v)
	}
}

func (c *Collector) setState(component, state string) {
	if component == "" {
		return
	}
	c.current[component] = state
	for _, s := range states {
		v := 0.0
		if s == state {
			v = 1
		}
		c.state.WithLabelValues(component, s).Set(v)
	}
}

// Cause returns the class of a shutdown's cause, as the cause label of
// graceful_shutdowns_total has it: [CauseSignal] for a [*lifecycle.SignalError],
// [CauseFailure] for a [*lifecycle.ComponentError] or [*lifecycle.PanicError],
// [CauseContext] for context.Canceled or context.DeadlineExceeded (the
// context passed to Run), and [CauseRequested] for anything else: the cause
// given by the program (Stop, Shutdown, a context cancelled with a cause).
func Cause(err error) string {
	var se *lifecycle.SignalError
	var ce *lifecycle.ComponentError
	var pe *lifecycle.PanicError
	switch {
	case errors.As(err, &se):
		return CauseSignal
	case errors.As(err, &ce), errors.As(err, &pe):
		return CauseFailure
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return CauseContext
	default:
		return CauseRequested
	}
}
