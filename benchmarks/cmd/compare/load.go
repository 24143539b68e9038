package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// loadPlan bounds one run of loopback load: clients keep-alive clients send
// POST /work one after the other; SIGTERM is sent after termAfter; a client
// stops at its first request that could not be sent (the server is gone), or
// when maxRequests have been sent in all, or when maxTime has passed.
type loadPlan struct {
	clients     int
	termAfter   time.Duration
	maxRequests int64
	maxTime     time.Duration
}

var defaultPlan = loadPlan{clients: 4, termAfter: 500 * time.Millisecond, maxRequests: 20000, maxTime: 12 * time.Second}

// loadResult counts what happened to the requests of a run.
type loadResult struct {
	OK      int64 // answered 200
	Lost    int64 // sent, then the connection was reset or closed before a full answer
	Other   int64 // answered, but not 200
	NotSent int64 // could not be sent (connection refused): the client stops
	Exited  bool  // the application exited by itself
	Code    string
}

func (r *loadResult) add(o loadResult) {
	r.OK += o.OK
	r.Lost += o.Lost
	r.Other += o.Other
	r.NotSent += o.NotSent
}

// sent is the number of requests that reached the server's socket.
func (r *loadResult) sent() int64 { return r.OK + r.Lost + r.Other }

// runLoad starts bin with args, puts it under load, sends SIGTERM during the
// load and counts the requests lost. The application is always reaped.
func runLoad(bin string, plan loadPlan, args ...string) (loadResult, error) {
	c, err := startChild(bin, args...)
	if err != nil {
		return loadResult{}, err
	}
	defer c.kill()

	tr := &http.Transport{MaxIdleConnsPerHost: plan.clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + c.addr + "/work"

	ctx, cancel := context.WithTimeout(context.Background(), plan.maxTime)
	defer cancel()
	var (
		res   loadResult
		mu    sync.Mutex
		count atomic.Int64
		wg    sync.WaitGroup
	)
	for range plan.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine loadResult
			defer func() { mu.Lock(); res.add(mine); mu.Unlock() }()
			for ctx.Err() == nil && count.Add(1) <= plan.maxRequests {
				switch post(ctx, client, url) {
				case outcomeOK:
					mine.OK++
				case outcomeOther:
					mine.Other++
				case outcomeLost:
					mine.Lost++
				case outcomeNotSent:
					mine.NotSent++
					return
				case outcomeAborted:
					return
				}
			}
		}()
	}
	t := time.NewTimer(plan.termAfter)
	select {
	case <-t.C:
		_, err = c.term()
	case <-ctx.Done():
	}
	t.Stop()
	wg.Wait()
	res.Exited = c.waitExit(hangLimit)
	res.Code = c.exitCode()
	return res, err
}

type outcome int

const (
	outcomeOK outcome = iota
	outcomeOther
	outcomeLost
	outcomeNotSent
	outcomeAborted // the load's own time ran out
)

// post sends one request and says what became of it.
func post(ctx context.Context, client *http.Client, url string) outcome {
	var wrote atomic.Bool // the trace is called from the transport's goroutines
	trace := &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { wrote.Store(false) },
		WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, url, http.NoBody)
	if err != nil {
		return outcomeAborted
	}
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			return outcomeOther
		}
	}
	switch {
	case err == nil:
		return outcomeOK
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return outcomeAborted
	case wrote.Load():
		return outcomeLost
	default:
		return outcomeNotSent
	}
}
