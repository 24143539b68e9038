package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// workHandler serves GET /work: it borrows a connection from the pool, holds
// it for delay (a query, say), and answers 200. If the request's context is
// cancelled first (the client left, or the shutdown budget ran out and the
// server is closing hard), it gives up and answers 503.
func workHandler(p *pool, delay time.Duration, served *atomic.Int64, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		log.Debug("work: begin", "remote", r.RemoteAddr)
		c, err := p.get(ctx)
		if err != nil {
			log.Error("work: no connection", "err", err)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer p.put(c)
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			// The client left, or the shutdown budget ran out: say so rather
			// than answer an empty 200, in case the connection still carries it.
			log.Warn("work: cancelled", "err", context.Cause(ctx))
			http.Error(w, "cancelled: "+context.Cause(ctx).Error(), http.StatusServiceUnavailable)
			return
		}
		served.Add(1)
		fmt.Fprintf(w, "done in %v on connection %d\n", delay, c.id)
		log.Debug("work: done", "remote", r.RemoteAddr)
	})
}

// worker returns the background worker: a stand-in for a queue consumer or a
// cache refresher. Every interval it borrows a connection from the pool and
// logs how many /work requests were served since the last tick. It returns nil
// when ctx is cancelled, which is how the Group stops it, and an error if the
// pool closed under it (which the stop order rules out).
func worker(p *pool, served *atomic.Int64, interval time.Duration, log *slog.Logger) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(interval)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-ctx.Done():
				log.Info("worker: stopped", "served", served.Load())
				return nil
			case <-t.C:
			}
			c, err := p.get(ctx)
			if err != nil {
				if ctx.Err() != nil {
					continue // stopping: the next select returns
				}
				return fmt.Errorf("worker: %w", err)
			}
			n := served.Load()
			log.Debug("worker: tick", "served", n-last, "connection", c.id)
			last = n
			p.put(c)
		}
	}
}

// stuck is the component that -hang-stop adds: its Stop never returns, as
// happens with a client library that blocks on a dead peer. The Group
// abandons it when the shutdown timeout runs out, names it, and exits with
// lifecycle.ExitTimeout.
type stuck struct{}

// Start blocks until ctx is cancelled, which the Group does after it has
// abandoned Stop.
func (stuck) Start(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Stop never returns.
func (stuck) Stop(context.Context) error {
	select {}
}
