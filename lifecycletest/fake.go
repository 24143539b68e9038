package lifecycletest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/graceful-go/graceful/lifecycle"
)

// Step is a point in a component's life where a [Fake] can block, fail or
// panic.
type Step int

// The steps of a Fake.
const (
	StepStart Step = iota + 1 // in Start, before the component is ready
	StepReady                 // in the Ready method, which the Group calls as it launches the component
	StepDrain                 // in Drain
	StepStop                  // in Stop
)

var stepNames = [...]string{"", "start", "ready", "drain", "stop"}

// String returns the step's name: "start", "ready", "drain" or "stop".
func (s Step) String() string {
	if s <= 0 || int(s) >= len(stepNames) {
		return "step(" + strconv.Itoa(int(s)) + ")"
	}
	return stepNames[s]
}

// A FakeOption sets a fault of a [Fake]; pass options to [NewFake].
type FakeOption func(*fakeConfig)

type fakeConfig struct {
	block     [len(stepNames)]bool
	fail      [len(stepNames)]error
	panicVal  [len(stepNames)]any
	ignoreCtx bool
	ignoreSt  bool
	errs      []string
}

func (c *fakeConfig) validStep(opt string, s Step) bool {
	if s <= 0 || int(s) >= len(stepNames) {
		c.errs = append(c.errs, fmt.Sprintf("%s: unknown step %v", opt, s))
		return false
	}
	return true
}

// BlockIn makes the Fake block at step s until [Fake.Release] is called:
//
//   - StepStart: Start blocks before the component is ready, so it becomes
//     ready late (at Release) or never. Stop and Start's context also end the
//     wait (Start then returns nil), unless IgnoreStop or IgnoreContext.
//   - StepReady: the Ready method itself blocks: a broken Readier.
//   - StepDrain: Drain blocks: a broken Drainer.
//   - StepStop: Stop blocks until Release or its context is done (unless
//     IgnoreContext): a slow or stuck Stop.
//
// Combined with FailAt or PanicAt at the same step, the Fake blocks first,
// then fails.
func BlockIn(s Step) FakeOption {
	return func(c *fakeConfig) {
		if c.validStep("BlockIn", s) {
			c.block[s] = true
		}
	}
}

// FailAt makes the Fake return err at step s: StepStart (Start returns err
// before the component is ready: a start failure) or StepStop (Stop returns
// err). Ready and Drain have no error to return: use PanicAt for them. err
// must not be nil; to make a running Start return nil, use [Fake.Exit].
func FailAt(s Step, err error) FakeOption {
	return func(c *fakeConfig) {
		switch {
		case !c.validStep("FailAt", s):
		case s == StepReady || s == StepDrain:
			c.errs = append(c.errs, fmt.Sprintf("FailAt(%v): %v has no error to return; use PanicAt", s, s))
		case err == nil:
			c.errs = append(c.errs, fmt.Sprintf("FailAt(%v, nil): no error to fail with", s))
		default:
			c.fail[s] = err
		}
	}
}

// PanicAt makes the Fake panic with v at step s (any step). v must not be nil.
func PanicAt(s Step, v any) FakeOption {
	return func(c *fakeConfig) {
		switch {
		case !c.validStep("PanicAt", s):
		case v == nil:
			c.errs = append(c.errs, fmt.Sprintf("PanicAt(%v, nil): no value to panic with", s))
		default:
			c.panicVal[s] = v
		}
	}
}

// IgnoreContext makes the Fake ignore the contexts it is given: a blocked
// Start or Stop waits for Release alone, and a running Start does not return
// when its context is cancelled.
func IgnoreContext() FakeOption {
	return func(c *fakeConfig) { c.ignoreCtx = true }
}

// IgnoreStop makes the running Start not return when Stop is called; it
// returns when its context is cancelled (which the Group does after Stop has
// returned), or, with IgnoreContext too, only after Release: the Group then
// reports "Start did not return after Stop".
func IgnoreStop() FakeOption {
	return func(c *fakeConfig) { c.ignoreSt = true }
}

// Fake is a configurable [lifecycle.Component] for tests: it behaves well by
// default, and fails, panics or blocks where its options say (see [NewFake]).
// It is a [lifecycle.Readier] and a [lifecycle.Drainer], counts its calls, and
// has channels to synchronise on. A zero Fake is ready to use and behaves
// well: Start is ready at once and runs until Stop is called or its context
// is cancelled; Stop and Drain return at once.
//
// A Fake may be started more than once (a restart): the counts add up, the
// channels are closed by the first call, and it is ready from the first time
// it became ready.
type Fake struct {
	cfg fakeConfig

	once        sync.Once
	ready       chan struct{}
	startCalled chan struct{}
	stopCalled  chan struct{}
	drainCalled chan struct{}
	exited      chan struct{}
	release     chan struct{}
	exit        chan error

	mu                    sync.Mutex
	starts, stops, drains int
	stopCtx               context.Context
	closed                map[chan struct{}]bool
}

// NewFake returns a Fake with the faults that opts set. It panics, naming the
// problem, on an invalid option (an unknown step, FailAt at Ready or Drain, a
// nil error or panic value), as it is a mistake in the test.
func NewFake(opts ...FakeOption) *Fake {
	f := &Fake{}
	for _, opt := range opts {
		opt(&f.cfg)
	}
	for s := StepStart; s <= StepStop; s++ {
		if f.cfg.fail[s] != nil && f.cfg.panicVal[s] != nil {
			f.cfg.errs = append(f.cfg.errs, fmt.Sprintf("both FailAt and PanicAt at %v", s))
		}
	}
	if len(f.cfg.errs) > 0 {
		panic(fmt.Sprintf("lifecycletest: NewFake: %v", errors.Join(stringErrs(f.cfg.errs)...)))
	}
	f.init()
	return f
}

func stringErrs(ss []string) []error {
	errs := make([]error, len(ss))
	for i, s := range ss {
		errs[i] = errors.New(s)
	}
	return errs
}

var (
	_ lifecycle.Component = (*Fake)(nil)
	_ lifecycle.Readier   = (*Fake)(nil)
	_ lifecycle.Drainer   = (*Fake)(nil)
)

func (f *Fake) init() {
	f.once.Do(func() {
		f.ready = make(chan struct{})
		f.startCalled = make(chan struct{})
		f.stopCalled = make(chan struct{})
		f.drainCalled = make(chan struct{})
		f.exited = make(chan struct{})
		f.release = make(chan struct{})
		f.exit = make(chan error, 1)
		f.closed = make(map[chan struct{}]bool)
	})
}

// closeOnce closes ch unless it was closed already.
func (f *Fake) closeOnce(ch chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed[ch] {
		f.closed[ch] = true
		close(ch)
	}
}

// maybePanic panics at step s if the Fake is set to.
func (f *Fake) maybePanic(s Step) {
	if v := f.cfg.panicVal[s]; v != nil {
		panic(v)
	}
}

// done returns ctx.Done(), or nil (never ready) when the Fake ignores its
// context.
func (f *Fake) done(ctx context.Context) <-chan struct{} {
	if f.cfg.ignoreCtx {
		return nil
	}
	return ctx.Done()
}

// Start runs the component: it blocks, fails or panics where the Fake is set
// to, otherwise becomes ready and blocks until Stop is called, its context is
// cancelled, or Exit is called (subject to IgnoreStop and IgnoreContext). It
// returns nil, the error given to FailAt(StepStart) or to Exit.
func (f *Fake) Start(ctx context.Context) error {
	f.init()
	f.mu.Lock()
	f.starts++
	f.mu.Unlock()
	f.closeOnce(f.startCalled)
	defer f.closeOnce(f.exited)

	var stop <-chan struct{}
	if !f.cfg.ignoreSt {
		stop = f.stopCalled
	}
	if f.cfg.block[StepStart] {
		select {
		case <-f.release:
		case <-stop:
			return nil
		case <-f.done(ctx):
			return nil
		}
	}
	f.maybePanic(StepStart)
	if err := f.cfg.fail[StepStart]; err != nil {
		return err
	}
	f.closeOnce(f.ready)

	stop = f.stopCalled
	var released <-chan struct{} // watched once a Stop has been ignored
	for {
		select {
		case <-stop:
			if !f.cfg.ignoreSt {
				return nil
			}
			stop, released = nil, f.release
		case <-released:
			return nil
		case <-f.done(ctx):
			return nil
		case err := <-f.exit:
			return err
		}
	}
}

// Ready returns the channel that is closed once Start has become ready. It
// blocks or panics where the Fake is set to (StepReady).
func (f *Fake) Ready() <-chan struct{} {
	f.init()
	if f.cfg.block[StepReady] {
		<-f.release
	}
	f.maybePanic(StepReady)
	return f.ready
}

// Drain records the call; it blocks or panics where the Fake is set to
// (StepDrain).
func (f *Fake) Drain() {
	f.init()
	f.mu.Lock()
	f.drains++
	f.mu.Unlock()
	f.closeOnce(f.drainCalled)
	if f.cfg.block[StepDrain] {
		<-f.release
	}
	f.maybePanic(StepDrain)
}

// Stop records the call and ctx, and makes a running Start return (unless
// IgnoreStop). It blocks, fails or panics where the Fake is set to
// (StepStop); a blocked Stop that ends because ctx is done returns ctx's
// cause. Otherwise it returns nil at once.
func (f *Fake) Stop(ctx context.Context) error {
	f.init()
	f.mu.Lock()
	f.stops++
	f.stopCtx = ctx
	f.mu.Unlock()
	f.closeOnce(f.stopCalled)
	if f.cfg.block[StepStop] {
		select {
		case <-f.release:
		case <-f.done(ctx):
			return context.Cause(ctx)
		}
	}
	f.maybePanic(StepStop)
	return f.cfg.fail[StepStop]
}

// Release ends every block of the Fake, now and later: a blocked Start
// becomes ready, blocked Ready, Drain and Stop calls return, and a running
// Start that ignored Stop returns. It may be called more than once; call it
// (for example with t.Cleanup) before a test that blocked a Fake ends, so
// that no goroutine is left behind.
func (f *Fake) Release() {
	f.init()
	f.closeOnce(f.release)
}

// Exit makes the running Start (or the next one) return err, as a component
// that ends by itself: nil for one that returns early, an error for one that
// fails while running. It does not wait for Start; a second Exit waits until
// a Start has taken the first.
func (f *Fake) Exit(err error) {
	f.init()
	f.exit <- err
}

// StartCalled returns a channel that is closed when Start is first called.
func (f *Fake) StartCalled() <-chan struct{} { f.init(); return f.startCalled }

// StopCalled returns a channel that is closed when Stop is first called.
func (f *Fake) StopCalled() <-chan struct{} { f.init(); return f.stopCalled }

// DrainCalled returns a channel that is closed when Drain is first called.
func (f *Fake) DrainCalled() <-chan struct{} { f.init(); return f.drainCalled }

// Exited returns a channel that is closed when Start first returns.
func (f *Fake) Exited() <-chan struct{} { f.init(); return f.exited }

// Starts returns how many times Start was called.
func (f *Fake) Starts() int { f.mu.Lock(); defer f.mu.Unlock(); return f.starts }

// Stops returns how many times Stop was called.
func (f *Fake) Stops() int { f.mu.Lock(); defer f.mu.Unlock(); return f.stops }

// Drains returns how many times Drain was called.
func (f *Fake) Drains() int { f.mu.Lock(); defer f.mu.Unlock(); return f.drains }

// StopContext returns the context of the last call of Stop, or nil if Stop
// was not called: a test can check that it was not done already, or carried
// the shutdown deadline.
func (f *Fake) StopContext() context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stopCtx
}
