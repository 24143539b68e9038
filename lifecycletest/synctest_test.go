package lifecycletest

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

// The numbers of TestSynctestBudget.
const (
	budget = 25 * time.Second // lifecycle.DefaultShutdownTimeout
	drain  = 5 * time.Second  // lifecycle.DefaultDrainDelay
	// wallLimit is the real time that a run of the 25 s scenario may take.
	wallLimit = 100 * time.Millisecond
	// tries is how many runs the test allows for one to keep to wallLimit, so
	// that a run slowed down by the shared machine does not fail it.
	tries = 5
)

// TestSynctestBudget runs a shutdown with a 25 s budget and a 5 s drain, and
// a component stuck in Stop for good, inside a synctest bubble. The Group's
// timers follow the bubble's clock: the drain lasts exactly 5 s and the stuck
// component is abandoned at the deadline, 25 s after the shutdown began, in
// fake time, while the whole run takes well under 100 ms of real time
// (measured outside the bubble, where the clock is real).
//
// It also checks that the engine is fit for a bubble: synctest.Test fails if
// a goroutine of the bubble is left when the test function returns (the
// Group's Run must leave none but the abandoned Stop, released at the end),
// and crashes the binary if the Group registers for signals in it.
func TestSynctestBudget(t *testing.T) {
	var walls []time.Duration
	for range tries {
		began := time.Now() // outside the bubble: real time
		synctest.Test(t, shutdownInBubble)
		wall := time.Since(began)
		if t.Failed() {
			return
		}
		walls = append(walls, wall)
		if wall <= wallLimit {
			t.Logf("real time for a %v budget and a %v drain: %v (runs: %v)", budget, drain, wall, walls)
			return
		}
	}
	t.Errorf("real time: want a run of the %v budget within %v, have %v in %d runs", budget, wallLimit, walls, tries)
}

// shutdownInBubble is the body of TestSynctestBudget, run in a bubble.
func shutdownInBubble(t *testing.T) {
	g, rec := New(t, lifecycle.WithShutdownTimeout(budget), lifecycle.WithDrainDelay(drain))
	db, api := NewFake(), NewFake()
	stuck := NewFake(BlockIn(StepStop), IgnoreContext())
	t.Cleanup(stuck.Release)
	g.Add("db", db)
	g.Add("queue", stuck)
	g.Add("api", api)
	run := Run(t, g)
	run.WaitReady()

	began := time.Now() // in the bubble: fake time
	err := run.Stop()
	took := time.Since(began)

	wantComponentErr(t, err, "queue", lifecycle.PhaseStopping, lifecycle.ErrTimeout)
	if d := drainTook(t, rec); d != drain {
		t.Errorf("drain: want exactly %v of fake time, have %v", drain, d)
	}
	// queue is abandoned at the deadline less db's reserve (a tenth of the
	// budget), so that db still has time of its own; Run returns within the
	// budget.
	if want := budget - budget/10; took < want || took > budget {
		t.Errorf("Run: want it to return at %v after the shutdown began (the deadline less db's reserve), have %v", want, took)
	}
	rec.ReadinessOffBeforeStop(t)
	rec.StoppedBefore(t, "api", "queue")
	rec.EveryStartedStoppedOnce(t)
	if ab := rec.Names(lifecycle.EventAbandoned); len(ab) != 1 || ab[0] != "queue" {
		t.Errorf("abandoned: want [queue], have %v", ab)
	}
	if db.Stops() != 1 {
		t.Errorf("db: want Stop called once after queue was abandoned, have %d", db.Stops())
	}
}

// TestSignalsInBubbleCrash pins down why New turns signals off: a Group that
// registers for signals inside a bubble, as the first user of os/signal in
// the process, crashes the test binary. The runtime creates the channels of
// its signal-mask goroutine on the first signal.Notify; made in a bubble, they
// belong to it, and the runtime's goroutine that selects on them is outside.
// Depending on which goroutine gets there first, the binary dies with "fatal
// error: select on synctest channel from outside bubble", or Notify blocks
// for good and synctest panics with "deadlock" (and when both happen, the
// runtime can hang while printing them). The test runs such a Group in a
// child process and kills it as soon as it has said which.
func TestSignalsInBubbleCrash(t *testing.T) {
	if os.Getenv("LIFECYCLETEST_SIGNALS_CHILD") == "1" {
		synctest.Test(t, func(t *testing.T) {
			g := lifecycle.New(lifecycle.WithSignals(syscall.SIGTERM), lifecycle.WithLogger(nil))
			g.Add("f", NewFake())
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_ = g.Run(ctx)
		})
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestSignalsInBubbleCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LIFECYCLETEST_SIGNALS_CHILD=1")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	const fatal = "select on synctest channel from outside bubble" // the runtime prints "fatal error: " first, maybe interleaved
	var out strings.Builder
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), fatal) {
			_ = cmd.Process.Kill()
			break
		}
	}
	_ = cmd.Wait()
	have := out.String()
	crashed := strings.Contains(have, fatal) ||
		strings.Contains(have, "deadlock: all goroutines in bubble are blocked") && strings.Contains(have, "os/signal.Notify")
	if !crashed {
		t.Errorf("a Group with signals in a bubble: want the child to crash, with %q or a deadlock in os/signal.Notify; have:\n%s", fatal, have)
	}
}
