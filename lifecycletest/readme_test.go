package lifecycletest_test

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
	"github.com/graceful-go/graceful/lifecycletest"
)

// The two tests of the root README's section on lifecycletest, as they are
// printed there (TestREADMECode in the root package checks that they are).

func TestShutdownOrder(t *testing.T) {
	g, rec := lifecycletest.New(t) // no signals, no drain delay, logs to the test's output
	g.Add("db", lifecycletest.NewFake())
	g.Add("queue", lifecycletest.NewFake())
	g.Add("api", lifecycletest.NewFake())

	run := lifecycletest.Run(t, g) // g.Run in a goroutine; stopped and checked at the end of the test
	run.WaitReady()
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}

	rec.StartedAfterReady(t, "api", "queue") // api started only once queue was ready
	rec.ReadinessOffBeforeStop(t)            // /readyz turned 503 before anything was stopped
	rec.StoppedBefore(t, "api", "queue")     // api had stopped before queue was told to
	rec.NothingAbandoned(t)
	rec.EveryStartedStoppedOnce(t)
}

func TestStuckStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, rec := lifecycletest.New(t, lifecycle.WithDrainDelay(5*time.Second))
		stuck := lifecycletest.NewFake(lifecycletest.BlockIn(lifecycletest.StepStop), lifecycletest.IgnoreContext())
		t.Cleanup(stuck.Release)
		g.Add("queue", stuck)
		run := lifecycletest.Run(t, g)
		run.WaitReady()
		if err := run.Stop(); !errors.Is(err, lifecycle.ErrTimeout) {
			t.Fatalf("want the stuck queue to time out, have %v", err)
		}
		if have := rec.Names(lifecycle.EventAbandoned); !slices.Equal(have, []string{"queue"}) {
			t.Errorf("abandoned: want [queue], have %v", have)
		}
	})
}
