package lifecycle

import (
	"log/slog"
	"os"
	"syscall"
	"time"
)

// Defaults of a Group, chosen for a service behind a load balancer under an
// orchestrator whose grace period is 30 s (Kubernetes' default): drain and
// stop fit in 25 s, leaving a margin of 5 s.
const (
	// DefaultShutdownTimeout is the budget for drain and stop together.
	DefaultShutdownTimeout = 25 * time.Second
	// DefaultDrainDelay is how long a Group that has something to drain
	// keeps serving after readiness turned off.
	DefaultDrainDelay = 5 * time.Second
	// DefaultStartTimeout bounds the whole start phase.
	DefaultStartTimeout = time.Minute
)

// The rules of time a Group keeps inside its budget. They are constants, not
// options: they follow from the budget.
const (
	// maxHardGrace is the longest time between the moment a component's stop
	// context is done and the moment the component is abandoned: the time it
	// has to close hard.
	maxHardGrace = 200 * time.Millisecond
	// forceGrace bounds a forced shutdown: every remaining component is
	// abandoned at most this long after the repeated signal.
	forceGrace = 250 * time.Millisecond
)

// An Option configures a Group; pass options to [New]. Every option is
// checked by Run (or Start) before anything starts.
type Option func(*config)

type config struct {
	shutdownTimeout time.Duration
	drainDelay      time.Duration
	drainSet        bool
	startTimeout    time.Duration
	signals         []os.Signal
	signalsSet      bool
	logger          *slog.Logger
	observers       []func(Event)
	errs            []error
}

// WithShutdownTimeout sets the shutdown budget: one deadline, counted from the
// moment the shutdown begins, that covers the drain delay and the stop of every
// component. Run returns within it, whatever the components do. It must be
// positive. The default is [DefaultShutdownTimeout].
func WithShutdownTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.errs = append(c.errs, invalid("WithShutdownTimeout(%v): a timeout must be positive", d))
			return
		}
		c.shutdownTimeout = d
	}
}

// WithDrainDelay sets how long the Group keeps serving after readiness has
// turned not-ready, so that load balancers stop routing to the process before
// its servers stop. It must not be negative, and it must be shorter than the
// shutdown timeout; zero means no delay. The default is [DefaultDrainDelay].
//
// The delay is waited only when there is something to drain: a component
// that implements [Drainer] (the HTTP and gRPC components do), or a readiness
// handler made by [Group.ReadyHandler]. A Group of workers and pools stops
// at once. A repeated signal cuts the delay short.
func WithDrainDelay(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, invalid("WithDrainDelay(%v): a delay must not be negative", d))
			return
		}
		c.drainDelay, c.drainSet = d, true
	}
}

// WithStartTimeout bounds the whole start phase: if a component is not
// ready this long after the start began, the start fails with [ErrTimeout],
// naming the components not ready, and what started is stopped. It must be
// positive. The default is [DefaultStartTimeout].
func WithStartTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.errs = append(c.errs, invalid("WithStartTimeout(%v): a timeout must be positive", d))
			return
		}
		c.startTimeout = d
	}
}

// WithSignals sets the signals on which Run begins a shutdown; a second one
// forces it. The default is SIGINT and SIGTERM. WithSignals() with no signal
// turns signal handling off, for a Run embedded in a host that owns the
// process, or a test. Signals are handled only by Run, never by a Group
// started as a component of another.
func WithSignals(sig ...os.Signal) Option {
	return func(c *config) {
		for _, s := range sig {
			if s == nil {
				c.errs = append(c.errs, invalid("WithSignals: nil signal"))
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

// WithObserver adds a function that receives every [Event] of the Group, for
// tests, metrics and platform integrations. It may be given more than once:
// each observer receives every event, in the order given. Observers are
// called one event at a time, in causal order (a component's starting before
// its ready, a dependent's stopped before its dependency's stopping), from
// the Group's own goroutine: they must return quickly and must not call the
// Group's blocking methods. A nil function is ignored.
func WithObserver(fn func(Event)) Option {
	return func(c *config) {
		if fn != nil {
			c.observers = append(c.observers, fn)
		}
	}
}

// resolve fills in the defaults and checks what depends on several options.
func (c *config) resolve() []error {
	errs := c.errs
	if c.shutdownTimeout == 0 {
		c.shutdownTimeout = DefaultShutdownTimeout
	}
	if !c.drainSet {
		c.drainDelay = DefaultDrainDelay
		if c.drainDelay >= c.shutdownTimeout {
			errs = append(errs, invalid("the default drain delay %v is not shorter than the shutdown timeout %v: set WithDrainDelay", c.drainDelay, c.shutdownTimeout))
		}
	} else if c.drainDelay >= c.shutdownTimeout {
		errs = append(errs, invalid("drain delay %v is not shorter than the shutdown timeout %v", c.drainDelay, c.shutdownTimeout))
	}
	if c.startTimeout == 0 {
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

// An AddOption configures one component; pass it to [Group.Add].
type AddOption func(*spec)

// spec is what Add was told of a component.
type spec struct {
	after       []string
	afterSet    bool
	stopTimeout time.Duration
	optional    bool
	restart     *RestartPolicy
	errs        []error
}

// After declares the components that this one needs: it starts only once
// each of them is ready, and each of them stops only after this one has
// stopped. After() with no name declares that it needs nothing: it starts at
// once, concurrently with the others. Without After, a component needs the
// one added just before it, so a Group built without After starts in the
// order of Add and stops in reverse.
//
// Every name must be that of a component of the same Group; a name that is
// not, a component that needs itself, and a cycle are configuration errors
// that Run reports, naming them, before anything starts.
func After(names ...string) AddOption {
	return func(s *spec) {
		s.after = append(s.after, names...)
		s.afterSet = true
	}
}

// StopTimeout bounds this component's stop: its Stop's context is done at
// most d after its stop began (less the short time it is given to close
// hard), and it is abandoned at d. It must be positive and not longer than
// the shutdown timeout. It is also the time the component reserves for
// itself inside the budget: see the Group's documentation on budgets.
func StopTimeout(d time.Duration) AddOption {
	return func(s *spec) {
		if d <= 0 {
			s.errs = append(s.errs, invalid("StopTimeout(%v): a timeout must be positive", d))
			return
		}
		s.stopTimeout = d
	}
}
