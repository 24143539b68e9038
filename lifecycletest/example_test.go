package lifecycletest_test

import (
	"context"
	"fmt"

	"github.com/graceful-go/graceful/lifecycle"
	"github.com/graceful-go/graceful/lifecycletest"
)

// newService is the code under test: a service's constructor that wires its
// parts into a Group. The API needs the queue, which needs the database.
func newService(db, queue, api lifecycle.Component, opts ...lifecycle.Option) *lifecycle.Group {
	g := lifecycle.New(opts...)
	g.Add("db", db)
	g.Add("queue", queue)
	g.Add("api", api)
	return g
}

// A test of a service's shutdown order. The service's parts are replaced by
// Fakes; the queue's Stop is held until the test releases it, to show that
// the database is not told to stop while the queue still needs it. The
// Recorder tells in which order the Group did everything.
func Example() {
	rec := lifecycletest.NewRecorder()
	db, api := lifecycletest.NewFake(), lifecycletest.NewFake()
	queue := lifecycletest.NewFake(lifecycletest.BlockIn(lifecycletest.StepStop))
	g := newService(db, queue, api, lifecycletest.Options(rec)...)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-g.Ready()

	cancel()             // begin the shutdown
	<-queue.StopCalled() // the queue is stopping, and stays so until released
	fmt.Println("api stopped:", api.Stops(), "db stopped:", db.Stops())
	queue.Release()

	fmt.Println("Run:", <-done)
	fmt.Println("started:", rec.Names(lifecycle.EventStarting))
	fmt.Println("stopped:", rec.Names(lifecycle.EventStopped))
	fmt.Println("phases:", rec.Phases())
	// Output:
	// api stopped: 1 db stopped: 0
	// Run: <nil>
	// started: [db queue api]
	// stopped: [api queue db]
	// phases: [starting running draining stopping stopped]
}
