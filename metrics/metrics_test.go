package metrics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/graceful-go/graceful/lifecycle"
	"github.com/graceful-go/graceful/lifecycletest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lint fails the test if the client library's linter (promlint, the checks
// of `promtool check metrics`) finds a problem in c's series.
func lint(t *testing.T, c prometheus.Collector) {
	t.Helper()
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// histogram returns the count and sum of the histogram name{labels} in c.
func histogram(t *testing.T, c prometheus.Collector, name string) (count uint64, sum float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			var h *dto.Histogram = mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no single series %s", name)
	return 0, 0
}

// TestScrapeAfterRun runs a Group with a component that is late to be
// ready, one whose Stop takes 1.5 s, and one stuck in Stop for good, inside a
// synctest bubble, so that every duration is exact; then scrapes the
// Collector and checks every series. The engine on this branch has no
// restarts yet: the restart of "api" is fed as synthetic events, the ones
// engine v2 is to report (EventRestarting, then EventStarting and EventReady).
func TestScrapeAfterRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const budget = 25 * time.Second
		c := New()
		g, _ := lifecycletest.New(t, lifecycle.WithShutdownTimeout(budget), lifecycle.WithDrainDelay(5*time.Second),
			lifecycle.WithObserver(c.Observe))
		db := lifecycletest.NewFake(lifecycletest.BlockIn(lifecycletest.StepStart))
		queue := lifecycletest.NewFake(lifecycletest.BlockIn(lifecycletest.StepStop), lifecycletest.IgnoreContext())
		api := lifecycletest.NewFake(lifecycletest.BlockIn(lifecycletest.StepStop))
		t.Cleanup(queue.Release)
		g.Add("db", db)
		g.Add("queue", queue)
		g.Add("api", api)

		run := lifecycletest.Run(t, g)
		<-db.StartCalled()
		time.Sleep(2 * time.Second) // db is ready 2 s (of fake time) after its Start
		db.Release()
		run.WaitReady()

		c.Observe(lifecycle.Event{Kind: lifecycle.EventRestarting, Component: "api"})
		c.Observe(lifecycle.Event{Kind: lifecycle.EventStarting, Component: "api"})
		c.Observe(lifecycle.Event{Kind: lifecycle.EventReady, Component: "api", Duration: 250 * time.Millisecond})

		go func() {
			<-api.StopCalled()
			time.Sleep(1500 * time.Millisecond) // api's Stop takes 1.5 s
			api.Release()
		}()
		if err := run.Stop(); !errors.Is(err, lifecycle.ErrTimeout) {
			t.Fatalf("Run: want ErrTimeout (queue abandoned), have %v", err)
		}

		const want = `
# HELP graceful_component_abandoned_total Stops, Drains or Starts after Stop of each component that did not return within the shutdown budget.
# TYPE graceful_component_abandoned_total counter
graceful_component_abandoned_total{component="queue"} 1
# HELP graceful_component_restarts_total Restarts of each component by its restart policy.
# TYPE graceful_component_restarts_total counter
graceful_component_restarts_total{component="api"} 1
# HELP graceful_component_start_duration_seconds How long components took to be ready, from the call of Start.
# TYPE graceful_component_start_duration_seconds histogram
graceful_component_start_duration_seconds_bucket{component="api",le="0.001"} 1
graceful_component_start_duration_seconds_bucket{component="api",le="0.005"} 1
graceful_component_start_duration_seconds_bucket{component="api",le="0.01"} 1
graceful_component_start_duration_seconds_bucket{component="api",le="0.05"} 1
graceful_component_start_duration_seconds_bucket{component="api",le="0.1"} 1
graceful_component_start_duration_seconds_bucket{component="api",le="0.25"} 2
graceful_component_start_duration_seconds_bucket{component="api",le="0.5"} 2
graceful_component_start_duration_seconds_bucket{component="api",le="1"} 2
graceful_component_start_duration_seconds_bucket{component="api",le="2.5"} 2
graceful_component_start_duration_seconds_bucket{component="api",le="5"} 2
graceful_component_start_duration_seconds_bucket{component="api",le="10"} 2
graceful_component_start_duration_seconds_bucket{component="api",le="25"} 2
graceful_component_start_duration_seconds_bucket{component="api",le="60"} 2
graceful_component_start_duration_seconds_bucket{component="api",le="+Inf"} 2
graceful_component_start_duration_seconds_sum{component="api"} 0.25
graceful_component_start_duration_seconds_count{component="api"} 2
graceful_component_start_duration_seconds_bucket{component="db",le="0.001"} 0
graceful_component_start_duration_seconds_bucket{component="db",le="0.005"} 0
graceful_component_start_duration_seconds_bucket{component="db",le="0.01"} 0
graceful_component_start_duration_seconds_bucket{component="db",le="0.05"} 0
graceful_component_start_duration_seconds_bucket{component="db",le="0.1"} 0
graceful_component_start_duration_seconds_bucket{component="db",le="0.25"} 0
graceful_component_start_duration_seconds_bucket{component="db",le="0.5"} 0
graceful_component_start_duration_seconds_bucket{component="db",le="1"} 0
graceful_component_start_duration_seconds_bucket{component="db",le="2.5"} 1
graceful_component_start_duration_seconds_bucket{component="db",le="5"} 1
graceful_component_start_duration_seconds_bucket{component="db",le="10"} 1
graceful_component_start_duration_seconds_bucket{component="db",le="25"} 1
graceful_component_start_duration_seconds_bucket{component="db",le="60"} 1
graceful_component_start_duration_seconds_bucket{component="db",le="+Inf"} 1
graceful_component_start_duration_seconds_sum{component="db"} 2
graceful_component_start_duration_seconds_count{component="db"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="0.001"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="0.005"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="0.01"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="0.05"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="0.1"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="0.25"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="0.5"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="1"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="2.5"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="5"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="10"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="25"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="60"} 1
graceful_component_start_duration_seconds_bucket{component="queue",le="+Inf"} 1
graceful_component_start_duration_seconds_sum{component="queue"} 0
graceful_component_start_duration_seconds_count{component="queue"} 1
# HELP graceful_component_state The state of each component: 1 for its current state, 0 for the others.
# TYPE graceful_component_state gauge
graceful_component_state{component="api",state="abandoned"} 0
graceful_component_state{component="api",state="failed"} 0
graceful_component_state{component="api",state="restarting"} 0
graceful_component_state{component="api",state="running"} 0
graceful_component_state{component="api",state="starting"} 0
graceful_component_state{component="api",state="stopped"} 1
graceful_component_state{component="api",state="stopping"} 0
graceful_component_state{component="db",state="abandoned"} 0
graceful_component_state{component="db",state="failed"} 0
graceful_component_state{component="db",state="restarting"} 0
graceful_component_state{component="db",state="running"} 0
graceful_component_state{component="db",state="starting"} 0
graceful_component_state{component="db",state="stopped"} 1
graceful_component_state{component="db",state="stopping"} 0
graceful_component_state{component="queue",state="abandoned"} 1
graceful_component_state{component="queue",state="failed"} 0
graceful_component_state{component="queue",state="restarting"} 0
graceful_component_state{component="queue",state="running"} 0
graceful_component_state{component="queue",state="starting"} 0
graceful_component_state{component="queue",state="stopped"} 0
graceful_component_state{component="queue",state="stopping"} 0
# HELP graceful_component_stop_duration_seconds How long components took to stop, from the call of Stop until Stop and Start had returned; abandoned stops are not observed.
# TYPE graceful_component_stop_duration_seconds histogram
graceful_component_stop_duration_seconds_bucket{component="api",le="0.001"} 0
graceful_component_stop_duration_seconds_bucket{component="api",le="0.005"} 0
graceful_component_stop_duration_seconds_bucket{component="api",le="0.01"} 0
graceful_component_stop_duration_seconds_bucket{component="api",le="0.05"} 0
graceful_component_stop_duration_seconds_bucket{component="api",le="0.1"} 0
graceful_component_stop_duration_seconds_bucket{component="api",le="0.25"} 0
graceful_component_stop_duration_seconds_bucket{component="api",le="0.5"} 0
graceful_component_stop_duration_seconds_bucket{component="api",le="1"} 0
graceful_component_stop_duration_seconds_bucket{component="api",le="2.5"} 1
graceful_component_stop_duration_seconds_bucket{component="api",le="5"} 1
graceful_component_stop_duration_seconds_bucket{component="api",le="10"} 1
graceful_component_stop_duration_seconds_bucket{component="api",le="25"} 1
graceful_component_stop_duration_seconds_bucket{component="api",le="60"} 1
graceful_component_stop_duration_seconds_bucket{component="api",le="+Inf"} 1
graceful_component_stop_duration_seconds_sum{component="api"} 1.5
graceful_component_stop_duration_seconds_count{component="api"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="0.001"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="0.005"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="0.01"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="0.05"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="0.1"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="0.25"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="0.5"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="1"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="2.5"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="5"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="10"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="25"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="60"} 1
graceful_component_stop_duration_seconds_bucket{component="db",le="+Inf"} 1
graceful_component_stop_duration_seconds_sum{component="db"} 0
graceful_component_stop_duration_seconds_count{component="db"} 1
# HELP graceful_phase The phase of the Group: 1 for the current phase, 0 for the others.
# TYPE graceful_phase gauge
graceful_phase{phase="draining"} 0
graceful_phase{phase="idle"} 0
graceful_phase{phase="running"} 0
graceful_phase{phase="starting"} 0
graceful_phase{phase="stopped"} 1
graceful_phase{phase="stopping"} 0
# HELP graceful_shutdowns_forced_total Shutdowns cut short by a repeated signal.
# TYPE graceful_shutdowns_forced_total counter
graceful_shutdowns_forced_total 0
# HELP graceful_shutdowns_total Shutdowns begun, by cause: signal, context, failure or requested.
# TYPE graceful_shutdowns_total counter
graceful_shutdowns_total{cause="context"} 0
graceful_shutdowns_total{cause="failure"} 0
graceful_shutdowns_total{cause="requested"} 1
graceful_shutdowns_total{cause="signal"} 0
`
		if err := testutil.CollectAndCompare(c, strings.NewReader(want),
			"graceful_component_abandoned_total", "graceful_component_restarts_total",
			"graceful_component_start_duration_seconds", "graceful_component_state",
			"graceful_component_stop_duration_seconds", "graceful_phase",
			"graceful_shutdowns_forced_total", "graceful_shutdowns_total"); err != nil {
			t.Error(err)
		}
		// The shutdown lasts until the stuck Stop is abandoned: at the
		// deadline less the reserve of db, which stops after it (a tenth of
		// the budget); db then stops at once. In fake time: exactly.
		count, sum := histogram(t, c.shutdownDur, "graceful_shutdown_duration_seconds")
		if want := budget - budget/10; count != 1 || sum != want.Seconds() {
			t.Errorf("graceful_shutdown_duration_seconds: want 1 shutdown of %v, have %d totalling %vs", want, count, sum)
		}
		lint(t, c)
	})
}

// TestAbandonedRealGroup runs a real Group, in real time, with a Stop that
// never returns, and scrapes the abandoned counter over the registry's HTTP
// handler, as Prometheus would.
func TestAbandonedRealGroup(t *testing.T) {
	c := New(WithConstLabels(prometheus.Labels{"group": "test"}))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	g := lifecycle.New(lifecycle.WithSignals(), lifecycle.WithDrainDelay(0),
		lifecycle.WithShutdownTimeout(100*time.Millisecond), lifecycle.WithLogger(nil), lifecycle.WithObserver(c.Observe))
	stuck := lifecycletest.NewFake(lifecycletest.BlockIn(lifecycletest.StepStop), lifecycletest.IgnoreContext())
	t.Cleanup(stuck.Release)
	g.Add("ok", lifecycletest.NewFake())
	g.Add("stuck", stuck)
	run := lifecycletest.Run(t, g)
	run.WaitReady()
	if err := run.Stop(); !errors.Is(err, lifecycle.ErrTimeout) {
		t.Fatalf("Run: want ErrTimeout, have %v", err)
	}

	rr := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rr.Body.String()
	for _, want := range []string{
		`graceful_component_abandoned_total{component="stuck",group="test"} 1`,
		`graceful_component_state{component="stuck",group="test",state="abandoned"} 1`,
		`graceful_component_state{component="ok",group="test",state="stopped"} 1`,
		`graceful_shutdowns_total{cause="requested",group="test"} 1`,
		`graceful_phase{group="test",phase="stopped"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics: want a line %s, have:\n%s", want, body)
		}
	}
	if strings.Contains(body, `graceful_component_abandoned_total{component="ok"`) {
		t.Errorf("/metrics: want no abandoned series for ok, have:\n%s", body)
	}
	lint(t, c)
}

func TestFreshCollector(t *testing.T) {
	c := New()
	want := `
# HELP graceful_phase The phase of the Group: 1 for the current phase, 0 for the others.
# TYPE graceful_phase gauge
graceful_phase{phase="draining"} 0
graceful_phase{phase="idle"} 1
graceful_phase{phase="running"} 0
graceful_phase{phase="starting"} 0
graceful_phase{phase="stopped"} 0
graceful_phase{phase="stopping"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "graceful_phase"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c, "graceful_shutdowns_total"); n != 4 {
		t.Errorf("graceful_shutdowns_total: want a series for each of the 4 causes from the start, have %d", n)
	}
	lint(t, c)
	// New registers nothing globally.
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "graceful_") {
			t.Errorf("default registry: want no graceful_ series, have %s", mf.GetName())
		}
	}
}

// TestStates feeds event sequences and checks the state each leaves.
func TestStates(t *testing.T) {
	ev := func(k lifecycle.EventKind, err error) lifecycle.Event {
		return lifecycle.Event{Kind: k, Component: "c", Err: err}
	}
	boom := errors.New("boom")
	tests := []struct {
		name string
		evs  []lifecycle.Event
		want string
	}{
		{"starting", []lifecycle.Event{ev(lifecycle.EventStarting, nil)}, StateStarting},
		{"running", []lifecycle.Event{ev(lifecycle.EventStarting, nil), ev(lifecycle.EventReady, nil)}, StateRunning},
		{"failed while running", []lifecycle.Event{ev(lifecycle.EventReady, nil), ev(lifecycle.EventExited, boom)}, StateFailed},
		{"returned early", []lifecycle.Event{ev(lifecycle.EventReady, nil), ev(lifecycle.EventExited, nil)}, StateFailed},
		{"failed to start", []lifecycle.Event{ev(lifecycle.EventStarting, nil), ev(lifecycle.EventExited, boom)}, StateFailed},
		{"stopping", []lifecycle.Event{ev(lifecycle.EventReady, nil), ev(lifecycle.EventStopping, nil), ev(lifecycle.EventExited, nil)}, StateStopping},
		{"stopped", []lifecycle.Event{ev(lifecycle.EventStopping, nil), ev(lifecycle.EventExited, nil), ev(lifecycle.EventStopped, nil)}, StateStopped},
		// The engine on this branch may report Start's return after the stop.
		{"exited after stopped", []lifecycle.Event{ev(lifecycle.EventStopping, nil), ev(lifecycle.EventStopped, nil), ev(lifecycle.EventExited, nil)}, StateStopped},
		{"abandoned", []lifecycle.Event{ev(lifecycle.EventStopping, nil), ev(lifecycle.EventAbandoned, nil), ev(lifecycle.EventExited, nil)}, StateAbandoned},
		{"restarting", []lifecycle.Event{ev(lifecycle.EventExited, boom), ev(lifecycle.EventRestarting, nil)}, StateRestarting},
		{"gave up", []lifecycle.Event{ev(lifecycle.EventExited, boom), ev(lifecycle.EventGaveUp, nil)}, StateFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New()
			for _, e := range tt.evs {
				c.Observe(e)
			}
			for _, s := range states {
				want := 0.0
				if s == tt.want {
					want = 1
				}
				if have := testutil.ToFloat64(c.state.WithLabelValues("c", s)); have != want {
					t.Errorf("graceful_component_state{state=%q}: want %v, have %v", s, want, have)
				}
			}
		})
	}
}

func TestCause(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&lifecycle.SignalError{}, CauseSignal},
		{context.Canceled, CauseContext},
		{context.DeadlineExceeded, CauseContext},
		{fmt.Errorf("wrapped: %w", context.Canceled), CauseContext},
		{&lifecycle.ComponentError{Component: "db", Phase: lifecycle.PhaseRunning, Err: errors.New("boom")}, CauseFailure},
		{&lifecycle.ComponentError{Component: "db", Phase: lifecycle.PhaseStarting, Err: lifecycle.ErrTimeout}, CauseFailure},
		{&lifecycle.PanicError{Value: "x"}, CauseFailure},
		{lifecycletest.ErrStopped, CauseRequested},
		{errors.New("deploy"), CauseRequested},
	} {
		if have := Cause(tt.err); have != tt.want {
			t.Errorf("Cause(%v): want %q, have %q", tt.err, tt.want, have)
		}
	}
	// Through a real Group: a cancelled context, a failure.
	for _, tt := range []struct {
		name string
		fail bool
		want string
	}{{"context", false, CauseContext}, {"failure", true, CauseFailure}} {
		t.Run(tt.name, func(t *testing.T) {
			c := New()
			g, _ := lifecycletest.New(t, lifecycle.WithObserver(c.Observe))
			f := lifecycletest.NewFake()
			g.Add("f", f)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			<-g.Ready()
			if tt.fail {
				f.Exit(errors.New("boom"))
			} else {
				cancel()
			}
			err := <-done
			cancel()
			if (err != nil) != tt.fail {
				t.Fatalf("Run: %v", err)
			}
			if have := testutil.ToFloat64(c.shutdowns.WithLabelValues(tt.want)); have != 1 {
				t.Errorf("graceful_shutdowns_total{cause=%q}: want 1, have %v", tt.want, have)
			}
		})
	}
}

func TestForced(t *testing.T) {
	c := New()
	c.Observe(lifecycle.Event{Kind: lifecycle.EventForced, Err: lifecycle.ErrForced})
	if have := testutil.ToFloat64(c.forced); have != 1 {
		t.Errorf("graceful_shutdowns_forced_total: want 1, have %v", have)
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, tt := range []struct {
		name string
		opt  Option
		want string
	}{
		{"buckets not increasing", WithBuckets([]float64{1, 0.5}), "buckets not increasing: 0.5 after 1"},
		{"no bucket", WithBuckets(nil), "no bucket"},
		{"infinite bucket", WithBuckets([]float64{1, math.Inf(1)}), "bucket 1 is +Inf, not finite"},
		{"label clash", WithConstLabels(prometheus.Labels{"component": "x"}), "duplicate label names"},
		{"label name", WithConstLabels(prometheus.Labels{"": "x"}), "is not a valid label name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := prometheus.NewRegistry().Register(New(tt.opt))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Register: want an error containing %q, have %v", tt.want, err)
			}
		})
	}
}

// TestConcurrent feeds events from several goroutines while scraping, for
// the race detector, and checks the counts add up.
func TestConcurrent(t *testing.T) {
	c := New()
	const workers, n = 4, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			name := fmt.Sprint("c", w)
			for range n {
				c.Observe(lifecycle.Event{Kind: lifecycle.EventReady, Component: name, Duration: time.Millisecond})
				c.Observe(lifecycle.Event{Kind: lifecycle.EventAbandoned, Component: name})
			}
		})
	}
	wg.Go(func() {
		for range n {
			testutil.CollectAndCount(c)
		}
	})
	wg.Wait()
	for w := range workers {
		if have := testutil.ToFloat64(c.abandoned.WithLabelValues(fmt.Sprint("c", w))); have != n {
			t.Errorf("abandoned c%d: want %d, have %v", w, n, have)
		}
	}
}
