package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNested: a Group among the components of another starts its own
// components in place, drains with the parent, and stops them in reverse
// order in the parent's stop phase; only the parent handles signals.
func TestNested(t *testing.T) {
	r := &rec{}
	child := New(WithLogger(nil), WithSignals(syscall.SIGUSR1)) // would handle SIGUSR1 if it were Run
	child.Add("c1", readyComp{newComp(r, "c1")})
	child.Add("c2", readyComp{newComp(r, "c2")})
	parent, _ := testGroup(WithSignals(syscall.SIGUSR1))
	parent.Add("a", readyComp{newComp(r, "a")})
	parent.Add("child", child)
	parent.Add("b", readyComp{newComp(r, "b")})

	done := runAsync(t, parent, context.Background())
	closed(t, parent.Ready(), generous, "parent ready")
	assert.Equal(t, PhaseRunning, child.Phase())
	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGUSR1))
	require.NoError(t, wait(t, done, generous, "Run"))

	assert.Equal(t, []string{"a", "c1", "c2", "b"}, r.only("start:"))
	assert.ElementsMatch(t, []string{"b", "c2", "c1", "a"}, r.only("drain:"), "Drains run concurrently")
	assert.Equal(t, []string{"b", "c2", "c1", "a"}, r.only("stop:"))
	var se *SignalError
	assert.ErrorAs(t, parent.Cause(), &se)
	assert.ErrorAs(t, child.Cause(), &se, "the child's cause is the parent's")
	assert.Equal(t, PhaseStopped, child.Phase())
}

// TestNestedFailure: a component failing in a nested Group shuts the parent
// down; the error names both, and the child's components stop in the
// parent's stop phase.
func TestNestedFailure(t *testing.T) {
	r := &rec{}
	boom := errors.New("boom")
	c2 := newComp(r, "c2")
	c2.runErr = make(chan error, 1)
	child := New(WithLogger(nil))
	child.Add("c1", newComp(r, "c1"))
	child.Add("c2", c2)
	parent, _ := testGroup()
	parent.Add("a", newComp(r, "a"))
	parent.Add("child", child)
	done := runAsync(t, parent, context.Background())
	closed(t, parent.Ready(), generous, "parent ready")
	c2.runErr <- boom
	err := wait(t, done, generous, "Run")
	assert.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "run child: run c2: boom")
	assert.Equal(t, ExitFailure, ExitCode(err))
	assert.Equal(t, []string{"c2", "c1", "a"}, r.only("stop:"))
	assert.ElementsMatch(t, []string{"c2", "c1", "a"}, r.only("drain:"), "the parent drained the child")
}

// TestNestedStartFailure: a nested Group whose start fails stops what it
// started itself, and the parent rolls back what came before it.
func TestNestedStartFailure(t *testing.T) {
	r := &rec{}
	boom := errors.New("no db")
	bad := newComp(r, "bad")
	bad.startErr = boom
	child := New(WithLogger(nil))
	child.Add("c1", newComp(r, "c1"))
	child.Add("bad", readyComp{bad})
	parent, _ := testGroup()
	parent.Add("a", newComp(r, "a"))
	parent.Add("child", child)
	parent.Add("b", newComp(r, "b"))
	err := wait(t, runAsync(t, parent, context.Background()), generous, "Run")
	assert.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "start child: start bad: no db")
	assert.Equal(t, []string{"c1", "a"}, r.only("stop:"))
	assert.NotContains(t, r.only("start:"), "b")
}

// TestComponentGroupAnyOrder: a Group used as a component is safe to Stop
// before Start, and to Stop twice.
func TestComponentGroupAnyOrder(t *testing.T) {
	t.Run("Stop before Start", func(t *testing.T) {
		r := &rec{}
		g := New(WithLogger(nil))
		g.Add("a", newComp(r, "a"))
		assert.NoError(t, g.Stop(context.Background()))
		assert.NoError(t, g.Start(context.Background()), "a Start after Stop returns at once")
		assert.Empty(t, r.all(), "something started")
		assert.ErrorIs(t, g.Run(context.Background()), ErrInvalid, "Run after Stop")
	})
	t.Run("Stop twice", func(t *testing.T) {
		r := &rec{}
		g := New(WithLogger(nil))
		g.Add("a", newComp(r, "a"))
		started := make(chan error, 1)
		go func() { started <- g.Start(context.Background()) }()
		closed(t, g.Ready(), generous, "ready")
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { assert.NoError(t, g.Stop(context.Background())) })
		}
		wg.Wait()
		assert.NoError(t, wait(t, started, generous, "Start"))
		assert.NoError(t, g.Stop(context.Background()))
		assert.Equal(t, []string{"a"}, r.only("stop:"))
	})
	t.Run("Stop during Start", func(t *testing.T) {
		r := &rec{}
		slow := newComp(r, "slow")
		slow.gate = make(chan struct{})
		g := New(WithLogger(nil))
		g.Add("a", newComp(r, "a"))
		g.Add("slow", readyComp{slow})
		started := make(chan error, 1)
		go func() { started <- g.Start(context.Background()) }()
		wait(t, waitFor(r, "start:slow"), generous, "slow starting")
		assert.NoError(t, g.Stop(context.Background()))
		assert.NoError(t, wait(t, started, generous, "Start"))
		assert.Equal(t, []string{"slow", "a"}, r.only("stop:"))
	})
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestAdapters: Func and Hooks behave as documented, in any order.
func TestAdapters(t *testing.T) {
	t.Run("Func stop before start", func(t *testing.T) {
		called := false
		c := Func(func(context.Context) error { called = true; return nil })
		assert.NoError(t, c.Stop(context.Background()))
		assert.NoError(t, c.Start(context.Background()))
		assert.False(t, called)
	})
	t.Run("Func returns its error", func(t *testing.T) {
		boom := errors.New("boom")
		c := Func(func(context.Context) error { return boom })
		assert.ErrorIs(t, c.Start(context.Background()), boom)
	})
	t.Run("Func context cause", func(t *testing.T) {
		c := Func(func(ctx context.Context) error { <-ctx.Done(); return context.Cause(ctx) })
		done := make(chan error, 1)
		go func() { done <- c.Start(context.Background()) }()
		// Stop may come before fn runs: both orders end with a nil Start.
		assert.NoError(t, c.Stop(context.Background()))
		assert.NoError(t, wait(t, done, generous, "Start"))
	})
	t.Run("Hooks", func(t *testing.T) {
		var calls []string
		opened := make(chan struct{})
		c := Hooks(func(context.Context) error { calls = append(calls, "open"); close(opened); return nil },
			func(context.Context) error { calls = append(calls, "close"); return nil })
		done := make(chan error, 1)
		go func() { done <- c.Start(context.Background()) }()
		closed(t, opened, generous, "opened")
		assert.NoError(t, c.Stop(context.Background()))
		assert.NoError(t, wait(t, done, generous, "Start"))
		assert.Equal(t, []string{"open", "close"}, calls)
	})
	t.Run("Hooks start error", func(t *testing.T) {
		boom := errors.New("refused")
		c := Hooks(func(context.Context) error { return boom }, nil)
		assert.ErrorIs(t, c.Start(context.Background()), boom)
	})
	t.Run("Hooks stop before start", func(t *testing.T) {
		called := 0
		c := Hooks(func(context.Context) error { called++; return nil }, func(context.Context) error { called++; return nil })
		assert.NoError(t, c.Stop(context.Background()))
		assert.NoError(t, c.Start(context.Background()))
		assert.Zero(t, called)
	})
}

// TestSignalHandlersRestored runs a Group in a child process: SIGTERM during
// Run is a clean stop; after Run returns, SIGTERM kills the process again
// (the default behaviour is back).
func TestSignalHandlersRestored(t *testing.T) {
	if os.Getenv("LIFECYCLE_SIGNAL_CHILD") == "1" {
		signalChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSignalHandlersRestored$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LIFECYCLE_SIGNAL_CHILD=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "child exited normally: %s", out.String())
	ws := ee.Sys().(syscall.WaitStatus)
	require.True(t, ws.Signaled(), "child was not killed by a signal: %s", out.String())
	assert.Equal(t, syscall.SIGTERM, ws.Signal())
	assert.Contains(t, out.String(), "run returned: <nil>")
}

// signalChild is the child process of TestSignalHandlersRestored.
func signalChild() {
	g := New(WithLogger(nil), WithDrainDelay(0)) // default signals: SIGINT, SIGTERM
	g.Add("w", Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
	go func() {
		<-g.Ready()
		_ = syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
	}()
	err := g.Run(context.Background())
	fmt.Printf("run returned: %v\n", err)
	_ = syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
	// The signal kills the process; if it is still caught, say so.
	time.Sleep(generous)
	fmt.Println("survived SIGTERM after Run")
}

// TestCauseMessage: the shutdown cause of a signal reads well.
func TestCauseMessage(t *testing.T) {
	err := &SignalError{Signal: syscall.SIGTERM}
	assert.Equal(t, "lifecycle: received signal terminated", err.Error())
	assert.True(t, strings.HasPrefix((&PanicError{Value: 1}).Error(), "panic: 1"))
}
