package lifecycle

import (
	"log/slog"
	"os"
	"syscall"
	"time"
)

// Defaults of a Group, chosen for a service behind a load balancer under an
// orchestrator whose grace period is 30 s (Kubernetes' default).
const (
	// DefaultShutdownTimeout is the budget for drain and stop together.
	DefaultShutdownTimeout = 25 * time.Second
	// DefaultStartTimeout bounds the whole start phase.
	DefaultStartTimeout = time.Minute
)

// stopGrace is how long Run waits, once the shutdown deadline has passed or a
// repeated signal forced the shutdown, for the remaining Stops to return hard.
// Run returns no later than the deadline plus stopGrace.
const stopGrace = 200 * time.Millisecond

// An Option configures a Group; pass options to [New].
type Option func(*config)

type config struct {
	shutdownTimeout time.Duration
	drainDelay      time.Duration
	drainSet        bool
	startTimeout    time.Duration
	startSet        bool
	signals         []os.Signal
	signalsSet      bool
	logger          *slog.Logger
	observer        func(Event)
	errs            []error
}

// WithShutdownTimeout sets the shutdown budget: one deadline, counted from the
// moment the shutdown begins, that covers the drain delay and the stop of every
// component. It must be positive. The default is [DefaultShutdownTimeout].
func WithShutdownTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.errs = append(c.errs, invalid("shutdown timeout %v is not positive", d))
			return
		}
		c.shutdownTimeout = d
	}
}

// WithDrainDelay sets how long the Group keeps serving after readiness has
// turned not-ready, so that load balancers stop routing to the process before
// its servers stop. It must not be negative and must be shorter than the
// shutdown timeout; zero turns the delay off. The default is a fifth of the
// shutdown timeout (5 s with the default timeout).
//
// The delay is only waited when the shutdown begins after the Group was
// running; a repeated signal cuts it short.
func WithDrainDelay(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, invalid("drain delay %v is negative", d))
			return
		}
		c.drainDelay, c.drainSet = d, true
	}
}

// WithStartTimeout bounds the whole start phase: if the last component is not
// ready this long after Run began, the start fails with [ErrTimeout] and what
// started is stopped. It must not be negative; zero means no limit. The default
// is [DefaultStartTimeout].
func WithStartTimeout(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, invalid("start timeout %v is negative", d))
			return
		}
		c.startTimeout, c.startSet = d, true
	}
}

// WithSignals sets the signals on which Run begins a shutdown; a second one
// forces it. The default is SIGINT and SIGTERM. WithSignals() with no signal
// turns signal handling off, for a Run embedded in a host that owns the
// process. Signals are handled only by Run, never by a Group started as a
// component of another.
func WithSignals(sig ...os.Signal) Option {
	return func(c *config) {
		for _, s := range sig {
			if s == nil {
				c.errs = append(c.errs, invalid("nil signal"))
				return
			}
		}
		c.signals, c.signalsSet = sig, true
	}
}

// WithLogger sets the logger for phase changes and component steps. The
// default is slog.Default(); nil discards the logs.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		c.logger = l
	}
}

// WithObserver sets a function that receives every [Event] of the Group, for
// tests and metrics. It is called synchronously, possibly from several
// goroutines at once, and must return quickly.
func WithObserver(fn func(Event)) Option {
	return func(c *config) { c.observer = fn }
}

// resolve fills in the defaults and checks what depends on several options.
func (c *config) resolve() []error {
	errs := c.errs
	if c.shutdownTimeout == 0 {
		c.shutdownTimeout = DefaultShutdownTimeout
	}
	if !c.drainSet {
		c.drainDelay = c.shutdownTimeout / 5
	}
	if c.drainDelay >= c.shutdownTimeout {
		errs = append(errs, invalid("drain delay %v is not shorter than the shutdown timeout %v", c.drainDelay, c.shutdownTimeout))
	}
	if !c.startSet {
		c.startTimeout = DefaultStartTimeout
	}
	if !c.signalsSet {
		c.signals = []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return errs
}
