package httpcomponent

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"

	"github.com/graceful-go/graceful/lifecycle"
)

// connKey is the context key under which ConnContext stores the *conn of a
// request.
type connKey struct{}

// handler counts the handlers running on each connection and adds
// "Connection: close" to the responses of a draining server.
type handler struct {
	s    *Server
	next http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, _ := r.Context().Value(connKey{}).(*conn)
	if c != nil {
		c.handlers.Add(1)
		if r.ProtoMajor == 2 && !c.h2.Load() {
			c.h2.Store(true)
		}
		c.t.changed()
		defer h.done(c)
	}
	if h.s.draining.Load() {
		w.Header().Set("Connection", "close")
		h.next.ServeHTTP(w, r)
		return
	}
	rw := &responseWriter{ResponseWriter: w, s: h.s}
	h.next.ServeHTTP(rw, r)
	if !rw.wrote && h.s.draining.Load() {
		// The drain began while the handler ran and it wrote nothing: its
		// response can still say so.
		w.Header().Set("Connection", "close")
	}
}

// responseWriter adds "Connection: close" to a response whose header is
// written once the drain has begun, although its handler began before: a
// keep-alive client is then told at once rather than at its next request.
// It passes every optional interface of http.ResponseWriter that net/http
// offers on to the ResponseWriter it wraps, and http.ResponseController
// finds the others through Unwrap.
type responseWriter struct {
	http.ResponseWriter
	s     *Server
	wrote bool // the header is written
}

// header is called before anything that writes the header.
func (w *responseWriter) header() {
	if !w.wrote {
		w.wrote = true
		if w.s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
	}
}

func (w *responseWriter) WriteHeader(code int) {
	if code >= 200 { // not an informational response
		w.header()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	w.header()
	return w.ResponseWriter.Write(p)
}

func (w *responseWriter) WriteString(s string) (int, error) {
	w.header()
	return io.WriteString(w.ResponseWriter, s)
}

func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	w.header()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

func (w *responseWriter) Flush() { _ = w.FlushError() }

func (w *responseWriter) FlushError() error {
	w.header()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *responseWriter) Push(target string, opts *http.PushOptions) error {
	if p, ok := w.ResponseWriter.(http.Pusher); ok {
		return p.Push(target, opts)
	}
	return http.ErrNotSupported
}

// Unwrap returns the ResponseWriter net/http gave, for
// http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (h *handler) done(c *conn) {
	if c.handlers.Add(-1) == 0 {
		c.t.release(c)
	}
	c.t.changed()
}

// healthHandler serves g's probes on /readyz and /livez, and the rest with
// next.
func healthHandler(g *lifecycle.Group, next http.Handler) http.Handler {
	ready, live := g.ReadyHandler(), g.LiveHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			ready.ServeHTTP(w, r)
		case "/livez":
			live.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// stoppingKey is the context key under which every request context carries
// the channel that [Stopping] returns.
type stoppingKey struct{}

// Stopping returns a channel that is closed when the [Server] that serves the
// request whose context is ctx begins to stop: when its Stop is called (in a
// Group, after the drain delay), or when the context given to its Start ends.
// It returns nil (a channel that is never closed) for a context that does
// not come from a request served by a Server.
//
// It is meant for handlers that stream, and that would otherwise learn of the
// stop only when the budget runs out and their request context is cancelled
// in the same instant as their connection is closed: such a handler selects
// on Stopping as well, writes a last message (a Server-Sent Event that tells
// the client to reconnect, say), and returns; Stop then ends the connection
// without waiting for the budget.
//
//	for {
//		select {
//		case ev := <-events:
//			fmt.Fprintf(w, "data: %s\n\n", ev)
//			rc.Flush()
//		case <-httpcomponent.Stopping(r.Context()):
//			fmt.Fprint(w, "event: bye\ndata: server stopping\n\n")
//			rc.Flush()
//			return
//		case <-r.Context().Done():
//			return
//		}
//	}
//
// Stopping does not block. A request context keeps its cancellation for the
// end of the budget; Stopping comes first.
func Stopping(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(stoppingKey{}).(<-chan struct{})
	return ch
}
