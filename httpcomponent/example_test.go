package httpcomponent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
)

// A web server in a Group, with the Group's readiness and liveness probes on
// /readyz and /livez. In a program, Run would be called with the main context
// and would stop on SIGINT or SIGTERM.
func Example() {
	g := lifecycle.New(
		lifecycle.WithSignals(), // in main, leave the default: SIGINT and SIGTERM
		lifecycle.WithLogger(nil),
		lifecycle.WithDrainDelay(100*time.Millisecond),
		lifecycle.WithShutdownTimeout(5*time.Second),
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello\n")
	})
	web := httpcomponent.New("127.0.0.1:0", mux, httpcomponent.WithHealth(g))
	web.HTTP().ReadHeaderTimeout = 5 * time.Second // the http.Server's settings, before Start
	g.Add("web", web)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-g.Ready() // the port is bound: web.Addr() tells which

	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	base := "http://" + web.Addr().String()
	for _, path := range []string{"/hello", "/readyz", "/livez"} {
		resp, err := c.Get(base + path)
		if err != nil {
			fmt.Println(err)
			break
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%s %d %s", path, resp.StatusCode, body)
	}

	cancel() // as a signal would: drain, then stop
	fmt.Println("Run:", <-done)
	_, err := net.Dial("tcp", web.Addr().String())
	fmt.Println("listener closed:", err != nil)
	// Output:
	// /hello 200 hello
	// /readyz 200 ok
	// /livez 200 ok
	// Run: <nil>
	// listener closed: true
}

// A caller-provided listener (from systemd socket activation, say), and a
// hook that tells WebSocket connections to go away when the server stops.
func ExampleWithHijackNotify() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	told := make(chan struct{})
	web := httpcomponent.New("", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: example\r\n\r\n")
		_, _ = io.Copy(io.Discard, conn) // the connection's life, until it is closed
	}), httpcomponent.WithListener(ln), httpcomponent.WithHijackNotify(func(c net.Conn) {
		// A WebSocket server would send a close frame (1001, going away);
		// here the connection is simply closed.
		_ = c.Close()
		close(told)
	}))

	started := make(chan error, 1)
	go func() { started <- web.Start(context.Background()) }()
	<-web.Ready()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: example\r\nConnection: Upgrade\r\nUpgrade: example\r\n\r\n")
	status := make([]byte, len("HTTP/1.1 101"))
	_, _ = io.ReadFull(conn, status)
	fmt.Println(string(status))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("Stop:", web.Stop(ctx))
	<-told
	fmt.Println("Start:", <-started)
	// Output:
	// HTTP/1.1 101
	// Stop: <nil>
	// Start: <nil>
}

// A Server-Sent Events handler that learns from Stopping that the server
// stops, tells its client with a last event, and returns, so that the stop
// does not wait for the budget to run out.
func ExampleStopping() {
	web := httpcomponent.New("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: hello\n\n")
		_ = rc.Flush()
		select {
		case <-httpcomponent.Stopping(r.Context()):
			fmt.Fprint(w, "event: bye\ndata: server stopping\n\n")
			_ = rc.Flush()
		case <-r.Context().Done():
		}
	}))
	started := make(chan error, 1)
	go func() { started <- web.Start(context.Background()) }()
	<-web.Ready()

	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + web.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, _ := br.ReadString('\n')
	fmt.Print(line)

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- web.Stop(ctx)
	}()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(line, "data: ") {
			fmt.Print(line)
		}
	}
	fmt.Println("Stop:", <-stopped)
	fmt.Println("Start:", <-started)
	// Output:
	// data: hello
	// data: server stopping
	// Stop: <nil>
	// Start: <nil>
}
