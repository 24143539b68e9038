package httpcomponent

import (
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
	draining := h.s.draining.Load()
	if draining {
		w.Header().Set("Connection", "close")
	}
	h.next.ServeHTTP(w, r)
	if !draining && h.s.draining.Load() {
		// The drain began while the handler ran: if it wrote nothing yet,
		// its response can still say so.
		w.Header().Set("Connection", "close")
	}
}

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
