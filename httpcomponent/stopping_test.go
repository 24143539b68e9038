package httpcomponent

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sse is a Server-Sent Events handler that sends an event whenever tick
// receives, and, when the server begins to stop, a last "bye" event before it
// returns; it ignores Stopping if deaf.
type sse struct {
	tick    chan struct{}
	entered chan struct{}
	ended   chan error // the request context's error when the handler returned
	deaf    bool
}

func newSSE() *sse {
	return &sse{tick: make(chan struct{}), entered: make(chan struct{}, 1), ended: make(chan error, 1)}
}

func (h *sse) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() { h.ended <- r.Context().Err() }()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	stopping := Stopping(r.Context())
	if h.deaf {
		stopping = nil
	}
	fmt.Fprint(w, "data: hello\n\n")
	_ = rc.Flush()
	h.entered <- struct{}{}
	for {
		select {
		case <-h.tick:
			fmt.Fprint(w, "data: tick\n\n")
			_ = rc.Flush()
		case <-stopping:
			fmt.Fprint(w, "event: bye\ndata: server stopping\n\n")
			_ = rc.Flush()
			return
		case <-r.Context().Done():
			return
		}
	}
}

// events reads the events of an SSE stream and sends each data line.
func events(br *bufio.Reader) <-chan string {
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
				ch <- rest
			}
		}
	}()
	return ch
}

// TestStoppingTellsStreamingHandlers: a streaming handler learns from
// Stopping that the server stops, long before the budget ends, writes a last
// event and returns; its client reads the event, and Stop returns without
// waiting for the budget.
func TestStoppingTellsStreamingHandlers(t *testing.T) {
	assert.Nil(t, Stopping(context.Background()), "a context that no Server made")

	const budget = 5 * time.Second
	h := newSSE()
	s := newServer(h)
	r := start(t, s)
	resp, err := client(t).Get(r.url)
	require.NoError(t, err)
	defer resp.Body.Close()
	evs := events(bufio.NewReader(resp.Body))
	assert.Equal(t, "hello", recv(t, evs, "first event"))
	recv(t, h.entered, "handler streaming")
	h.tick <- struct{}{}
	assert.Equal(t, "tick", recv(t, evs, "an event"))

	began := time.Now()
	stopped := stopAsync(s, budget, nil)
	assert.Equal(t, "server stopping", recv(t, evs, "last event"), "the handler wrote its last event")
	assert.NoError(t, recv(t, h.ended, "handler"), "the handler returned before its context was cancelled")
	assert.NoError(t, recv(t, stopped, "Stop"))
	took := time.Since(began)
	t.Logf("Stop with a streaming handler took %v", took)
	assert.Less(t, took, budget/2, "Stop waited for the budget")
	assert.NoError(t, r.startErr(t))
}

// TestStreamPastBudget: a streaming handler that ignores Stopping is cut at
// the budget: its context is cancelled, Stop reports the timeout, and Start
// returns.
func TestStreamPastBudget(t *testing.T) {
	const budget = 300 * time.Millisecond
	h := newSSE()
	h.deaf = true
	s := newServer(h)
	r := start(t, s)
	resp, err := client(t).Get(r.url)
	require.NoError(t, err)
	defer resp.Body.Close()
	evs := events(bufio.NewReader(resp.Body))
	assert.Equal(t, "hello", recv(t, evs, "first event"))
	recv(t, h.entered, "handler streaming")

	began := time.Now()
	err = recv(t, stopAsync(s, budget, nil), "Stop")
	took := time.Since(began)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, took, budget)
	assert.Less(t, took, budget+time.Second, "Stop returned promptly at the budget")
	assert.ErrorIs(t, recv(t, h.ended, "handler"), context.Canceled, "the handler's context is cancelled at the budget")
	for range evs { // the stream ends
	}
	assert.NoError(t, r.startErr(t))
}
