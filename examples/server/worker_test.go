package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

// bound limits how long a broken test waits.
const bound = 20 * time.Second

// startWorker starts c as the Group would, and returns a channel with what
// Start returned.
func startWorker(c lifecycle.Component) <-chan error {
	res := make(chan error, 1)
	go func() { res <- c.Start(context.Background()) }()
	return res
}

// TestJobWorker runs the job worker in lifecycle.Worker on SQLite: a job in hand
// when it is told to stop is finished; one still in hand when the budget
// runs out is released; nothing new is claimed once stopping.
func TestJobWorker(t *testing.T) {
	for _, tc := range []struct {
		name         string
		jobTime      time.Duration
		budget       time.Duration
		wantDone     int64
		wantReleased int64
	}{
		{"Finishes", 300 * time.Millisecond, time.Hour, 1, 0},
		{"Releases", time.Hour, 50 * time.Millisecond, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseDB("", t.TempDir()+"/w.db")
			if err != nil {
				t.Fatal(err)
			}
			d := openTestDB(t, cfg)
			q := newQueue(d, "q", time.Minute)
			ctx := context.Background()
			if _, err := q.enqueue(ctx, []string{"null", "null"}); err != nil {
				t.Fatal(err)
			}
			claimed := make(chan struct{}, 2)
			log := slog.New(&onMessage{msg: "worker: claimed", ch: claimed})
			w := &jobWorker{q: q, runID: "test", jobTime: tc.jobTime, poll: time.Hour, log: log}
			c := lifecycle.Worker(w.run)
			res := startWorker(c)
			select {
			case <-claimed: // the first job is in hand
			case <-time.After(bound):
				t.Fatal("the worker claimed no job")
			}
			stopCtx, cancel := context.WithTimeout(ctx, tc.budget)
			defer cancel()
			// Stop says when the job in hand had to be cut short.
			if err := c.Stop(stopCtx); (err != nil) != (tc.wantReleased > 0) {
				t.Errorf("Stop: %v", err)
			}
			if err := <-res; err != nil {
				t.Errorf("Start: %v", err)
			}
			s := mustStats(t, q)
			if s.Done != tc.wantDone || s.Releases != tc.wantReleased || s.Claims != 1 || s.Running != 0 {
				t.Errorf("stats %+v: want %d done, %d released, 1 claim (the second job untouched)", s, tc.wantDone, tc.wantReleased)
			}
		})
	}
}

// onMessage is a slog.Handler that sends on ch for every record whose
// message is msg, and drops everything.
type onMessage struct {
	msg string
	ch  chan<- struct{}
}

func (h *onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h *onMessage) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *onMessage) WithGroup(string) slog.Handler            { return h }
func (h *onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.ch <- struct{}{}
	}
	return nil
}

func TestEnqueueRequest(t *testing.T) {
	for _, tc := range []struct {
		body    string
		want    []string
		wantErr string
	}{
		{"3", []string{"null", "null", "null"}, ""},
		{` {"duration": "1s", "x": [1, 2]} `, []string{`{"duration":"1s","x":[1,2]}`}, ""},
		{`"text"`, []string{`"text"`}, ""},
		{"", nil, "empty body"},
		{"0", nil, "count 0"},
		{"10001", nil, "count 10001"},
		{"1.5", nil, "count 1.5"},
		{"abc", nil, "not JSON"},
		{`{"duration": 5}`, nil, `"duration" must be a string`},
		{`{"duration": "-1s"}`, nil, "negative"},
	} {
		have, err := enqueueRequest([]byte(tc.body))
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("enqueueRequest(%q): have error %v, want one that says %q", tc.body, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("enqueueRequest(%q): %v", tc.body, err)
		case tc.wantErr == "" && strings.Join(have, " ") != strings.Join(tc.want, " "):
			t.Errorf("enqueueRequest(%q): have %q, want %q", tc.body, have, tc.want)
		}
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string // in the error; "" for none
	}{
		{nil, ""},
		{[]string{"-db", "postgres://u:secret@127.0.0.1:5432/db"}, ""},
		{[]string{"-db", "sqlite:/tmp/x.db"}, ""},
		{[]string{"-db", "mysql://x"}, `-db "mysql://x" is neither`},
		{[]string{"-db-path", ""}, "-db-path is empty"},
		{[]string{"-db-path", "a?b.db"}, "must not contain"},
		{[]string{"-job-time", "-1s"}, "-job-time -1s is negative"},
		{[]string{"-worker-stop-timeout", "0s"}, "-worker-stop-timeout 0s is not positive"},
		{[]string{"-lease", "10ms"}, "-lease 10ms is shorter"},
		{[]string{"-queue", ""}, "-queue is empty"},
		{[]string{"-poll", "0s"}, "-poll 0s is not positive"},
	} {
		o, err := parseFlags(tc.args, io.Discard)
		switch {
		case tc.says == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.says != "" && (err == nil || !strings.Contains(err.Error(), tc.says) || !errors.Is(err, lifecycle.ErrInvalid)):
			t.Errorf("%q: have error %v, want an ErrInvalid that says %q", tc.args, err, tc.says)
		case tc.says == "" && strings.Contains(o.db.show, "secret"):
			t.Errorf("%q: the database shown in the log has the password: %s", tc.args, o.db.show)
		}
	}
}
