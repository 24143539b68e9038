package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// workHandler serves GET /work: it takes a connection of the database's pool,
// holds it for delay (a query, say), and answers 200. If the request's
// context is cancelled first (the client left, or the shutdown budget ran out
// and the server is closing hard), it gives up and answers 503.
func workHandler(db *database, delay time.Duration, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		log.Debug("work: begin", "remote", r.RemoteAddr)
		c, err := db.db.Conn(ctx)
		if err == nil {
			err = c.PingContext(ctx)
			if err != nil {
				_ = c.Close() // the ping error is the one to report
			}
		}
		if err != nil {
			log.Error("work: no connection", "err", err)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer c.Close()
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
		fmt.Fprintf(w, "done in %v\n", delay)
		log.Debug("work: done", "remote", r.RemoteAddr)
	})
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
