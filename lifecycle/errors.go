package lifecycle

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

var (
	// ErrInvalid is matched (with errors.Is) by every configuration error:
	// an empty, duplicate or nil component, a duration out of range, a drain
	// delay not shorter than the shutdown timeout, an unknown dependency or a
	// cycle, Add after Run, Run twice. Run returns such errors before it
	// starts anything.
	ErrInvalid = errors.New("lifecycle: invalid configuration")

	// ErrExited is matched by the error of a component whose Start returned nil
	// while the Group was starting or running, which shuts the Group down.
	ErrExited = errors.New("lifecycle: component exited")

	// ErrTimeout is matched by the error of Run when a deadline ran out: a
	// component was not ready within the start timeout, or a component's Stop
	// (or its Start after Stop, or its Drain) had not returned in its time. It
	// is also the cause of a component's stop context once its time is up.
	ErrTimeout = errors.New("lifecycle: timed out")

	// ErrForced is matched by the error of Run when a repeated signal forced
	// the shutdown. It is also the cause of the stop context from then on.
	ErrForced = errors.New("lifecycle: shutdown forced")

	// ErrStopped is the cause of the context that [Func] gives its function
	// once Stop is called, and of a component's Start context cancelled after
	// a Stop that was not part of a shutdown (a restart).
	ErrStopped = errors.New("lifecycle: component stopped")
)

// errStopped is the internal name of ErrStopped.
var errStopped = ErrStopped

// ComponentError records what went wrong with one component, and when.
// Every component error that Run returns is a *ComponentError, joined with the
// others by errors.Join; errors.Is and errors.As see through both.
type ComponentError struct {
	Component string // the name the component was added with
	Phase     Phase  // the Group's phase when it happened
	Err       error

	// Stacks, for a component abandoned because a Stop, a Start after Stop,
	// or a Drain did not return, are the stacks of the goroutines working
	// for it when it was abandoned: those that its Start, Stop and Drain
	// run on and those they started (they carry the pprof label
	// "lifecycle.component" with its name, "parent/name" in a nested Group).
	// In the text format of runtime/pprof's goroutine profile (debug=1), at
	// most 16 KiB. Nil otherwise.
	Stacks []byte
}

// Error returns "<verb> <component>: <error>", the verb saying what the
// component was doing: start, run, drain or stop.
func (e *ComponentError) Error() string {
	return e.Phase.verb() + " " + e.Component + ": " + e.Err.Error()
}

// Unwrap returns e.Err.
func (e *ComponentError) Unwrap() error { return e.Err }

// PanicError is the error of a component whose Start, Stop or Drain
// panicked. The Group recovers the panic and shuts down as for any other
// failure.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack, as debug.Stack returns it
}

// Error returns "panic: " and the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value when it is an error, so that errors.Is and
// errors.As see it, and nil otherwise.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// SignalError is the cause of a shutdown that a signal began; see
// [Group.Cause]. Run does not return it: a shutdown on a signal that ends
// cleanly returns nil.
type SignalError struct {
	Signal os.Signal
}

// Error names the signal.
func (e *SignalError) Error() string { return "lifecycle: received signal " + e.Signal.String() }

// Exit codes that [ExitCode] returns.
const (
	ExitOK      = 0 // a clean stop: the context was cancelled, a signal, or Stop
	ExitFailure = 1 // a component failed: an error or a panic in any phase, or ErrExited
	ExitInvalid = 2 // the configuration was invalid (ErrInvalid); nothing started
	ExitTimeout = 3 // a deadline ran out (ErrTimeout): something was abandoned
	ExitForced  = 4 // a repeated signal forced the shutdown (ErrForced)
)

// ExitCode maps an error returned by [Group.Run] to a process exit code: nil
// is ExitOK; otherwise the first that matches of ErrForced (ExitForced),
// ErrTimeout (ExitTimeout), ErrInvalid (ExitInvalid), and any other error is
// ExitFailure. Run logs its error on its last line ("lifecycle: stopped"),
// so main may end with os.Exit(lifecycle.ExitCode(g.Run(ctx))) and lose
// nothing; with the logger off, print the error before exiting.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrForced):
		return ExitForced
	case errors.Is(err, ErrTimeout):
		return ExitTimeout
	case errors.Is(err, ErrInvalid):
		return ExitInvalid
	default:
		return ExitFailure
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// GaveUpError is the error of a component that failed more often than its
// [RestartPolicy] allows. It is the Err of the component's
// [*ComponentError]; errors.Is and errors.As see the last failures through
// it.
type GaveUpError struct {
	Restarts int           // how many times it was started again
	Window   time.Duration // the policy's window
	Errs     []error       // its last failures, oldest first (at most 3)
}

// Error says how many restarts were made within the window, and the last
// failures.
func (e *GaveUpError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gave up after %d restarts within %v", e.Restarts, e.Window)
	if len(e.Errs) > 0 {
		b.WriteString("; last errors: ")
		for i, err := range e.Errs {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(err.Error())
		}
	}
	return b.String()
}

// Unwrap returns the last failures.
func (e *GaveUpError) Unwrap() []error { return e.Errs }
