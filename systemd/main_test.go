package systemd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
)

// childEnv, when set, makes the test binary run childMain instead of the
// tests: it is the program that systemd-socket-activate starts in
// TestSocketActivate. childServeEnv lists the sockets it takes, by name.
const (
	childEnv      = "GRACEFUL_SYSTEMD_TEST_CHILD"
	childServeEnv = "GRACEFUL_SYSTEMD_TEST_SERVE"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	goleak.VerifyTestMain(m)
}

// childMain is a small socket-activated service, written as a user would:
// it takes the sockets named in $GRACEFUL_SYSTEMD_TEST_SERVE from the
// activation (or binds 127.0.0.1:0 when not activated), serves HTTP on each
// with an httpcomponent in a Group that notifies systemd, and exits on
// SIGTERM with the Group's exit code. Each answer says which socket it came
// through, and whether the sockets left untaken are close-on-exec.
func childMain() int {
	ls, err := Activation()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return lifecycle.ExitInvalid
	}
	defer ls.Close()
	g := lifecycle.New(
		Notify(),
		lifecycle.WithShutdownTimeout(5*time.Second),
		lifecycle.WithDrainDelay(0),
		lifecycle.WithLogger(nil),
	)
	for _, name := range strings.Split(os.Getenv(childServeEnv), ",") {
		ln, err := ls.Listen(name, "tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return lifecycle.ExitInvalid
		}
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, name+" untaken-cloexec="+untakenCloexec(ls))
		})
		web := httpcomponent.New("", h, httpcomponent.WithListener(ln))
		web.HTTP().ReadHeaderTimeout = 5 * time.Second
		g.Add(name, web)
	}
	err = g.Run(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
	}
	return lifecycle.ExitCode(err)
}

// untakenCloexec says, for each socket not taken, whether its descriptor is
// close-on-exec: "true,true", or "none".
func untakenCloexec(ls *Listeners) string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []string
	for _, s := range ls.socks {
		if s.file == nil {
			continue
		}
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(s.fd), syscall.F_GETFD, 0)
		out = append(out, fmt.Sprint(errno == 0 && flags&syscall.FD_CLOEXEC != 0))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}
