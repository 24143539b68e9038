package systemd_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
	"github.com/graceful-go/graceful/systemd"
)

// A Group that tells systemd what it does. Under systemd the one line is
// lifecycle.New(systemd.Notify(...)); here a socket of the example stands in
// for systemd's, and the Group is cancelled as soon as it runs.
func ExampleNotifier() {
	dir, err := os.MkdirTemp("", "notify")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "notify")
	systemdSocket, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		panic(err)
	}
	defer systemdSocket.Close()
	getenv := func(key string) string {
		if key == "NOTIFY_SOCKET" {
			return sock
		}
		return os.Getenv(key)
	}

	const budget = 10 * time.Second
	n, err := systemd.NewNotifier(systemd.WithGetenv(getenv))
	if err != nil {
		panic(err)
	}
	g := lifecycle.New(
		lifecycle.WithObserver(n.Observe),
		lifecycle.WithShutdownTimeout(budget),
		lifecycle.WithDrainDelay(0),
		lifecycle.WithSignals(),
		lifecycle.WithLogger(nil),
	)
	g.Add("worker", lifecycle.Func(func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-g.Ready()
		cancel()
	}()
	_ = g.Run(ctx)

	// Every datagram is in the socket's queue once Run has returned.
	usec := regexp.MustCompile(`EXTEND_TIMEOUT_USEC=\d+`)
	buf := make([]byte, 4096)
	_ = systemdSocket.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		n, err := systemdSocket.Read(buf)
		if err != nil {
			break
		}
		fmt.Printf("%q\n", usec.ReplaceAll(buf[:n], []byte("EXTEND_TIMEOUT_USEC=(rest of the budget + 1.2 s)")))
	}
	// Output:
	// "STATUS=starting"
	// "READY=1\nSTATUS=running"
	// "STOPPING=1\nSTATUS=shutting down (context canceled)"
	// "EXTEND_TIMEOUT_USEC=(rest of the budget + 1.2 s)"
	// "STATUS=draining (context canceled)"
	// "STATUS=stopping (context canceled)"
	// "EXTEND_TIMEOUT_USEC=(rest of the budget + 1.2 s)"
	// "STATUS=stopped (context canceled)"
}

// A server that runs the same way under systemd, with socket activation and
// the notify protocol, and by hand. Under systemd the listener comes from the
// socket unit (FileDescriptorName=http); by hand, or when the unit passes no
// socket, the server binds the address in its Start, so that a port in use is
// an error of Start.
func ExampleListeners_Inherited() {
	sockets, err := systemd.Activation()
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // a malformed LISTEN_* environment
		os.Exit(lifecycle.ExitInvalid)
	}
	defer sockets.Close()                // the sockets passed but not taken
	ln, err := sockets.Inherited("http") // nil when not activated
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // activated, but no socket named http
		os.Exit(lifecycle.ExitInvalid)
	}

	const budget = 10 * time.Second
	g := lifecycle.New(systemd.Notify(), lifecycle.WithShutdownTimeout(budget))
	web := httpcomponent.New("127.0.0.1:8080", http.DefaultServeMux, httpcomponent.WithListener(ln), httpcomponent.WithHealth(g))
	web.HTTP().ReadHeaderTimeout = 5 * time.Second
	g.Add("http", web)
	os.Exit(lifecycle.ExitCode(g.Run(context.Background())))
}

// Listen returns the inherited socket, or binds the address: for servers
// that take a net.Listener.
func ExampleListeners_Listen() {
	sockets, err := systemd.Activation()
	if err != nil {
		panic(err)
	}
	defer sockets.Close()
	ln, err := sockets.Listen("metrics", "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	fmt.Println("activated:", sockets.Activated(), ln.Addr().Network())
	// Output: activated: false tcp
}
