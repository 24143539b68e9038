package systemd_test

import (
	"net/http"
	"time"

	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
	"github.com/graceful-go/graceful/systemd"
)

// The root README's snippets on systemd, compiled (never run).

func readmeNotify() *lifecycle.Group {
	g := lifecycle.New(systemd.Notify(), lifecycle.WithShutdownTimeout(10*time.Second))
	return g
}

func readmeActivation(mux *http.ServeMux) error {
	sockets, err := systemd.Activation() // LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES; an error if malformed
	if err != nil {
		return err
	}
	defer sockets.Close()                // the sockets passed and not taken
	ln, err := sockets.Inherited("http") // by FileDescriptorName=; nil when not activated
	if err != nil {
		return err
	}
	web := httpcomponent.New(":8080", mux, httpcomponent.WithListener(ln)) // nil: binds ":8080" in Start
	// grpccomponent.WithListener(ln) alike; sockets.Listen("http", "tcp", addr) binds at once instead.
	_ = web
	return nil
}

var _ = []any{readmeNotify, readmeActivation}
