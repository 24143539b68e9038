package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// errPoolClosed is what get returns once the pool has begun to close.
var errPoolClosed = errors.New("pool: closed")

// pool stands for a database connection pool: a fixed set of connections that
// the HTTP handlers and the worker borrow. It is the resource that must close
// last. It is added to the Group first, so it is opened before anything uses
// it and closed after everything that uses it has stopped; a request or a
// worker tick that found it closed would fail, and the end-to-end test would
// see it.
type pool struct {
	log     *slog.Logger
	size    int
	conns   chan *conn    // the idle connections; holds all of them when none is borrowed
	closing chan struct{} // closed when close begins
	borrows atomic.Int64
}

// conn is one connection of a pool.
type conn struct{ id int }

func newPool(size int, log *slog.Logger) *pool {
	return &pool{
		log:     log,
		size:    size,
		conns:   make(chan *conn, size),
		closing: make(chan struct{}),
	}
}

// open fills the pool. It is the start hook of the pool's component.
func (p *pool) open(context.Context) error {
	for i := range p.size {
		p.conns <- &conn{id: i}
	}
	p.log.Info("pool: opened", "size", p.size)
	return nil
}

// get borrows a connection, waiting until one is idle or ctx is done. It
// returns errPoolClosed once the pool has begun to close.
func (p *pool) get(ctx context.Context) (*conn, error) {
	select {
	case <-p.closing:
		return nil, errPoolClosed
	default:
	}
	select {
	case c := <-p.conns:
		p.borrows.Add(1)
		return c, nil
	case <-p.closing:
		return nil, errPoolClosed
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// put gives back a connection that get returned. It never blocks.
func (p *pool) put(c *conn) { p.conns <- c }

// close refuses new borrows and waits until every connection is back, or ctx
// is done; then it reports those still borrowed. It is the stop hook of the
// pool's component; the Group calls it once.
func (p *pool) close(ctx context.Context) error {
	close(p.closing)
	for n := range p.size {
		select {
		case <-p.conns:
			continue
		default:
		}
		select {
		case <-p.conns:
		case <-ctx.Done():
			return fmt.Errorf("pool: %d of %d connections still borrowed: %w", p.size-n, p.size, context.Cause(ctx))
		}
	}
	p.log.Info("pool: closed", "borrows", p.borrows.Load())
	return nil
}
