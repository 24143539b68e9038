package lifecycle

import (
	"errors"
	"fmt"
	"os"
)

var (
	// ErrInvalid is matched (with errors.Is) by every configuration error:
	// an empty, duplicate or nil component, a negative duration, a drain delay
	// not shorter than the shutdown timeout, Add after Run, Run twice. Run
	// returns such errors before it starts anything.
	ErrInvalid = errors.New("lifecycle: invalid configuration")

	// ErrExited is matched by the error of a component whose Start returned nil
	// while the Group was starting or running, which shuts the Group down.
	ErrExited = errors.New("component exited")

	// ErrTimeout is matched by the error of Run when a deadline ran out: a
	// component was not ready within the start timeout, or a component's Stop
	// (or its Start, after Stop) had not returned when the shutdown timeout
	// ran out. It is also the cause of the stop context once the shutdown
	// timeout has run out.
	ErrTimeout = errors.New("lifecycle: shutdown timed out")

	// ErrForced is matched by the error of Run when a repeated signal forced
	// the shutdown. It is also the cause of the stop context from then on.
	ErrForced = errors.New("lifecycle: shutdown forced")
)

// ComponentError records what went wrong with one component, and when.
// Every component error that Run returns is a *ComponentError, joined with the
// others by errors.Join; errors.Is and errors.As see through both.
type ComponentError struct {
	Component string // the name the component was added with
	Phase     Phase  // the Group's phase when it happened
	Err       error
}

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
// ExitFailure. Use it as os.Exit(lifecycle.ExitCode(err)) in main.
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
