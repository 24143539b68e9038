package lifecycle

import (
	"io"
	"net/http"
	"strings"
)

// ReadyHandler returns an http.Handler for a readiness probe (Kubernetes
// /readyz): 200 "ok" while the Group is running and every component that
// gates readiness (all but the [Optional] ones) is running; 503
// "not ready: <reason>" before, while such a component restarts, and from the
// first moment of the drain.
//
// With the query parameter "verbose", the body lists one check per component
// in Kubernetes' format ("[+]db ok", "[-]cache failed: backoff: <error>"), the
// Group's phase first, and a last line that says whether the check passed;
// the status code is the same as without it.
//
// A Group whose ReadyHandler was called waits the drain delay when it shuts
// down, even without a [Drainer]: something routes by its readiness.
func (g *Group) ReadyHandler() http.Handler {
	g.mu.Lock()
	g.health = true
	g.mu.Unlock()
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ok, reason, checks := g.readiness()
		respond(w, req, "readyz", ok, "not ready: "+reason, checks)
	})
}

// LiveHandler returns an http.Handler for a liveness probe (Kubernetes
// /livez): 200 "ok" until the Group has stopped, 503 "not live: stopped"
// after. Draining and stopping are alive: the orchestrator must not kill the
// process for shutting down. With "verbose", the body lists one check per
// component: failed only for a component that was abandoned (it is stuck).
func (g *Group) LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		g.mu.Lock()
		phase := g.phase
		checks := make([]check, 0, len(g.units)+1)
		checks = append(checks, check{name: "lifecycle", ok: phase != PhaseStopped, reason: phase.String()})
		for _, u := range g.units {
			c := check{name: u.name, ok: u.state != StateAbandoned}
			if !c.ok {
				c.reason = describe(u)
			}
			checks = append(checks, c)
		}
		g.mu.Unlock()
		respond(w, req, "livez", phase != PhaseStopped, "not live: "+phase.String(), checks)
	})
}

// check is one line of a verbose health answer.
type check struct {
	name   string
	ok     bool
	reason string
}

// readiness says whether the Group is ready, why not, and the checks.
func (g *Group) readiness() (bool, string, []check) {
	g.mu.Lock()
	defer g.mu.Unlock()
	checks := make([]check, 0, len(g.units)+1)
	ok := g.phase == PhaseRunning
	reason := g.phase.String()
	checks = append(checks, check{name: "lifecycle", ok: ok, reason: reason})
	for _, u := range g.units {
		c := check{name: u.name, ok: u.state == StateRunning}
		if !c.ok {
			c.reason = describe(u)
			if !u.spec.optional && ok {
				ok, reason = false, u.name+" "+u.state.String()
			}
		}
		checks = append(checks, c)
	}
	return ok, reason, checks
}

// describe says why u is not ok. g.mu is held.
func describe(u *unit) string {
	s := u.state.String()
	if u.lastErr != nil && (u.state == StateBackoff || u.state == StateFailed || u.state == StateExited || u.state == StateAbandoned) {
		s += ": " + firstLine(u.lastErr.Error())
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func respond(w http.ResponseWriter, req *http.Request, what string, ok bool, notOK string, checks []check) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	if _, verbose := req.URL.Query()["verbose"]; !verbose {
		if ok {
			_, _ = io.WriteString(w, "ok\n")
		} else {
			_, _ = io.WriteString(w, notOK+"\n")
		}
		return
	}
	var b strings.Builder
	for _, c := range checks {
		if c.ok {
			b.WriteString("[+]" + c.name + " ok\n")
		} else {
			b.WriteString("[-]" + c.name + " failed: " + c.reason + "\n")
		}
	}
	if ok {
		b.WriteString(what + " check passed\n")
	} else {
		b.WriteString(what + " check failed\n")
	}
	_, _ = io.WriteString(w, b.String())
}
