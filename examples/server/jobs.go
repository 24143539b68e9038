package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// maxEnqueue bounds the jobs one request may enqueue.
const maxEnqueue = 10000

// settleTimeout bounds the write of a job's outcome (done, or released).
const settleTimeout = 5 * time.Second

// jobWorker consumes the queue: one job at a time, each for its duration
// (the payload's "duration", or -job-time).
type jobWorker struct {
	q       *queue
	runID   string        // this process's run id, recorded with every completion
	jobTime time.Duration // a job's duration when its payload does not say
	poll    time.Duration // how often an idle worker looks at the queue
	log     *slog.Logger
}

// run is the worker's body, for lifecycle.Worker: it claims and
// processes jobs until stopping is closed. A job in hand when stopping closes
// is finished; one still in hand when ctx is cancelled (the stop budget ran
// out) is released back to the queue. It returns an error only when the
// database has failed several claims in a row.
func (w *jobWorker) run(ctx context.Context, stopping <-chan struct{}) error {
	var done, failures int
	idle := time.NewTimer(0)
	defer idle.Stop()
	for n := 1; ; n++ {
		select {
		case <-stopping:
			w.log.Info("worker: stopped", "done", done)
			return nil
		default:
		}
		j, ok, err := w.q.claim(ctx, w.runID+"/"+strconv.Itoa(n))
		switch {
		case err != nil && ctx.Err() != nil:
			return nil // the stop budget ran out: stopping is closed too
		case err != nil:
			failures++
			if failures == 5 {
				return fmt.Errorf("worker: %d claims failed in a row: %w", failures, err)
			}
			w.log.Warn("worker: claim failed; retrying", "err", err, "failures", failures)
		case ok:
			failures = 0
			if w.process(ctx, stopping, j) {
				done++
			}
			continue
		default:
			failures = 0
		}
		idle.Reset(w.poll)
		select {
		case <-stopping:
		case <-w.q.notify:
		case <-idle.C:
		}
	}
}

// process works on j for its duration, keeping its lease, then completes it.
// When stopping closes meanwhile, it goes on; when ctx is cancelled (the stop
// budget ran out), it releases j. It reports whether it completed j.
func (w *jobWorker) process(ctx context.Context, stopping <-chan struct{}, j job) bool {
	d := w.jobTime
	if p, err := parsePayload([]byte(j.payload)); err == nil && p.Duration > 0 {
		d = time.Duration(p.Duration)
	}
	log := w.log.With("job", j.id, "owner", j.owner)
	log.Debug("worker: claimed", "claims", j.claims, "duration", d)
	began := time.Now()
	work := time.NewTimer(d)
	defer work.Stop()
	beat := time.NewTicker(w.q.lease / 3)
	defer beat.Stop()
	// The outcome (done, or released) is written with a context of its own:
	// the write must not be torn by the cancellation that asked for it.
	settle, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	for {
		select {
		case <-work.C:
			return w.complete(settle, log, j, time.Since(began))
		case <-stopping:
			stopping = nil
			log.Info("worker: stopping: finishing the job in hand", "left", (d - time.Since(began)).Round(time.Millisecond))
		case <-beat.C:
			ok, err := w.q.extend(ctx, j)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Warn("worker: extending the lease failed; going on", "err", err)
			case err == nil && !ok:
				log.Warn("worker: the job was taken over (its lease expired); dropping it")
				return false
			}
		case <-ctx.Done():
			w.release(settle, log, j, context.Cause(ctx), time.Since(began), d)
			return false
		}
	}
}

// complete marks j done, and reports whether it did.
func (w *jobWorker) complete(ctx context.Context, log *slog.Logger, j job, took time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	ok, err := w.q.complete(ctx, j, w.runID)
	switch {
	case err != nil:
		// The outcome is unknown: give the job back. If the completion did
		// commit, the release changes nothing (the job is no longer
		// running); if neither commits, the lease expires.
		released, rerr := w.q.release(ctx, j)
		log.Error("worker: completing failed", "err", err, "released", released, "release_err", rerr)
		return false
	case !ok:
		log.Warn("worker: the job was taken over (its lease expired) before it was done; not completing it")
		return false
	}
	log.Info("worker: done", "took", took.Round(time.Millisecond), "claims", j.claims)
	return true
}

// release gives j back to the queue after the stop budget ran out (cause).
func (w *jobWorker) release(ctx context.Context, log *slog.Logger, j job, cause error, worked, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	released, err := w.q.release(ctx, j)
	switch {
	case err != nil:
		log.Error("worker: releasing the job in hand failed; it goes back to the queue when its lease expires",
			"err", err, "cause", cause)
	case !released:
		log.Warn("worker: the job in hand was no longer ours to release", "cause", cause)
	default:
		log.Info("worker: released the job in hand back to the queue", "cause", cause,
			"worked", worked.Round(time.Millisecond), "left", (d - worked).Round(time.Millisecond))
	}
}

// payload is what the example understands in a job's payload; anything
// else in it is kept and ignored.
type payload struct {
	// Duration, when set, is how long the job takes instead of -job-time:
	// "5s", "250ms".
	Duration jsonDuration `json:"duration"`
}

type jsonDuration time.Duration

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf(`"duration" must be a string such as "1.5s": %w`, err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf(`"duration": %w`, err)
	}
	if v < 0 {
		return fmt.Errorf(`"duration" %v is negative`, v)
	}
	*d = jsonDuration(v)
	return nil
}

// parsePayload reads the part of a job's payload that the worker uses.
// A payload that is not an object uses -job-time.
func parsePayload(b []byte) (payload, error) {
	var p payload
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		return p, nil
	}
	return p, json.Unmarshal(b, &p)
}

// enqueueRequest turns a request body into the payloads of the jobs it asks
// for: a number N is N jobs with a null payload; any other JSON value is one
// job with it as its payload.
func enqueueRequest(body []byte) ([]string, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New(`empty body: send a count (a number, such as 200) or a JSON payload (such as {"duration":"1s"})`)
	}
	if !json.Valid(body) {
		return nil, errors.New("the body is not JSON: send a count or a JSON payload")
	}
	var n json.Number
	if json.Unmarshal(body, &n) == nil {
		c, err := n.Int64()
		if err != nil || c < 1 || c > maxEnqueue {
			return nil, fmt.Errorf("count %s: want a whole number from 1 to %d", n, maxEnqueue)
		}
		out := make([]string, c)
		for i := range out {
			out[i] = "null"
		}
		return out, nil
	}
	if _, err := parsePayload(body); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return nil, err
	}
	return []string{compact.String()}, nil
}

// enqueueHandler serves POST /jobs: the body is a count or a JSON payload
// (see enqueueRequest); the answer is 201 with {"ids":[...]}.
func enqueueHandler(q *queue, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		payloads, err := enqueueRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ids, err := q.enqueue(r.Context(), payloads)
		if err != nil {
			log.Error("jobs: enqueue failed", "err", err)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		log.Debug("jobs: enqueued", "jobs", len(ids), "via", "http")
		writeJSON(w, http.StatusCreated, map[string]any{"ids": ids})
	})
}

// statsHandler serves GET /jobs/stats.
func statsHandler(q *queue, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := q.stats(r.Context())
		if err != nil {
			log.Error("jobs: stats failed", "err", err)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, http.StatusOK, s)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
