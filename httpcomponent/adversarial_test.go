package httpcomponent

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestAdversarialClients stops a server under clients that misbehave or push
// the server to its limits. For each, it asserts the requests lost, the time
// the stop took (with generous bounds), and that no goroutine is left.
func TestAdversarialClients(t *testing.T) {
	t.Run("slowloris", func(t *testing.T) {
		// Clients that send their headers a byte at a time and never finish
		// hold the stop until its budget, and are cut there; a request in
		// flight beside them is answered.
		const (
			attackers = 20
			budget    = time.Second
		)
		slow := newBlocking(1)
		mux := http.NewServeMux()
		mux.Handle("/slow", slow)
		s := newServer(mux)
		listenerClosed := make(chan struct{})
		s.testListenerClosed = func() { close(listenerClosed) }
		r := start(t, s)
		c := client(t)
		inflight := goGet(c, r.url+"/slow")
		recv(t, slow.entered, "request in flight")

		stopAttack := make(chan struct{})
		var attack sync.WaitGroup
		cut := make(chan error, attackers)
		for range attackers {
			conn, err := net.Dial("tcp", r.addr)
			require.NoError(t, err)
			attack.Add(1)
			go func() {
				defer attack.Done()
				defer conn.Close()
				req := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
				tick := time.NewTicker(20 * time.Millisecond) // the attacker's pace
				defer tick.Stop()
				for i := range len(req) {
					if _, err := io.WriteString(conn, req[i:i+1]); err != nil {
						cut <- err
						return
					}
					select {
					case <-tick.C:
					case <-stopAttack:
						cut <- nil
						return
					}
				}
				cut <- nil
			}()
		}
		began := time.Now()
		stopped := stopAsync(s, budget, nil)
		recv(t, listenerClosed, "listener closed")
		close(slow.release)
		res := recv(t, inflight, "request in flight")
		require.NoError(t, res.err, "a request in flight beside the attackers")
		err := recv(t, stopped, "Stop")
		took := time.Since(began)
		assert.ErrorIs(t, err, context.DeadlineExceeded, "the attackers were cut at the budget")
		assert.GreaterOrEqual(t, took, budget)
		assert.Less(t, took, budget+time.Second)
		assert.NoError(t, r.startErr(t))
		var closed int
		for range attackers {
			if recv(t, cut, "attacker") != nil {
				closed++
			}
		}
		close(stopAttack)
		attack.Wait()
		t.Logf("slowloris: Stop took %v; %d of %d attackers saw their connection closed", took, closed, attackers)
		assert.Equal(t, attackers, closed, "every attacker's connection is closed at the budget")
		c.CloseIdleConnections()
		goleak.VerifyNone(t)
	})

	t.Run("uploads in flight", func(t *testing.T) {
		// Uploads under way when the stop begins are read to the end and
		// answered.
		const (
			uploads = 4
			chunk   = 64 << 10
			chunks  = 16
		)
		entered := make(chan struct{}, uploads)
		s := newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, n)
		}))
		listenerClosed := make(chan struct{})
		s.testListenerClosed = func() { close(listenerClosed) }
		r := start(t, s)
		c := client(t)
		results := make([]<-chan result, uploads)
		writers := make([]*io.PipeWriter, uploads)
		for i := range uploads {
			pr, pw := io.Pipe()
			writers[i] = pw
			ch := make(chan result, 1)
			results[i] = ch
			go func() {
				resp, err := c.Post(r.url, "application/octet-stream", pr)
				if err != nil {
					ch <- result{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				ch <- result{status: resp.StatusCode, body: string(b), err: err}
			}()
			_, err := pw.Write(make([]byte, chunk))
			require.NoError(t, err)
			recv(t, entered, "upload entered the handler")
		}
		began := time.Now()
		stopped := stopAsync(s, wait, nil)
		recv(t, listenerClosed, "listener closed")
		for _, pw := range writers { // the rest of every upload, after the stop began
			for range chunks - 1 {
				_, err := pw.Write(make([]byte, chunk))
				require.NoError(t, err)
			}
			require.NoError(t, pw.Close())
		}
		var lost int
		for i, ch := range results {
			res := recv(t, ch, "upload")
			if res.err != nil || res.status != http.StatusOK || res.body != strconv.Itoa(chunk*chunks) {
				lost++
				t.Errorf("upload %d: %+v", i, res)
			}
		}
		assert.NoError(t, recv(t, stopped, "Stop"))
		t.Logf("uploads: %d of %d lost; Stop took %v", lost, uploads, time.Since(began))
		assert.NoError(t, r.startErr(t))
		c.CloseIdleConnections()
		goleak.VerifyNone(t)
	})

	t.Run("clients that stop reading", func(t *testing.T) {
		// A response that its client does not read holds the stop until the
		// budget, which cuts it; the handler's write then fails.
		const budget = 500 * time.Millisecond
		writing := make(chan struct{}, 1)
		handlerErr := make(chan error, 1)
		s := newServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			buf := make([]byte, 64<<10)
			writing <- struct{}{}
			for range 1 << 14 { // 1 GiB at most
				if _, err := w.Write(buf); err != nil {
					handlerErr <- err
					return
				}
			}
			handlerErr <- nil
		}))
		r := start(t, s)
		conn, err := net.Dial("tcp", r.addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		recv(t, writing, "handler writing") // and the client never reads

		began := time.Now()
		err = recv(t, stopAsync(s, budget, nil), "Stop")
		took := time.Since(began)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.GreaterOrEqual(t, took, budget)
		assert.Less(t, took, budget+time.Second)
		assert.Error(t, recv(t, handlerErr, "handler"), "the handler's write fails once the connection is closed")
		assert.NoError(t, r.startErr(t))
		t.Logf("a client that stops reading: Stop took %v", took)
		goleak.VerifyNone(t)
	})

	cert, pool := testCert(t)
	for _, tlsOn := range []bool{false, true} {
		name := "HTTP/2 over h2c"
		scheme := "http"
		if tlsOn {
			name, scheme = "HTTP/2 over TLS", "https"
		}
		t.Run(name, func(t *testing.T) {
			// Streams multiplexed on one connection, in flight when the stop
			// begins, are answered; an idle connection beside them does not
			// hold the stop.
			const streams = 8
			h := newBlocking(streams)
			mux := http.NewServeMux()
			mux.Handle("/slow", h)
			mux.Handle("/", okHandler)
			s := h2Server(cert, tlsOn, mux)
			r := start(t, s)
			busy, idle := h2Client(pool, tlsOn), h2Client(pool, tlsOn)
			base := scheme + "://" + r.addr
			require.NoError(t, get(&http.Client{Transport: idle, Timeout: wait}, base+"/").err)
			results := make([]<-chan result, streams)
			for i := range results {
				results[i] = goGet(&http.Client{Transport: busy, Timeout: wait}, base+"/slow")
				recv(t, h.entered, "stream entered")
			}
			stopped := stopAsync(s, wait, nil)
			released := time.Now()
			close(h.release)
			var lost int
			for _, ch := range results {
				if res := recv(t, ch, "stream"); res.err != nil || res.proto != 2 || res.body != "done" {
					lost++
					t.Errorf("stream: %+v", res)
				}
			}
			assert.NoError(t, recv(t, stopped, "Stop"))
			took := time.Since(released)
			t.Logf("%s: %d of %d streams lost; Stop returned %v after they were released", name, lost, streams, took)
			assert.Less(t, took, 700*time.Millisecond, "net/http's GOAWAY timer alone is one second")
			assert.NoError(t, r.startErr(t))
			busy.CloseIdleConnections()
			idle.CloseIdleConnections()
			goleak.VerifyNone(t)
		})
	}

	t.Run("hijacked connections", func(t *testing.T) {
		// Hijacked connections are told and waited for; once their owners
		// close them, the stop ends.
		const n = 50
		handlers := make(chan struct{}, n)
		s := newServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			defer func() { handlers <- struct{}{} }()
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
			_ = brw.Flush()
			_, _ = io.Copy(io.Discard, brw)
		}), WithHijackNotify(func(c net.Conn) { _ = c.Close() }))
		r := start(t, s)
		conns := make([]net.Conn, n)
		for i := range conns {
			conn, err := net.Dial("tcp", r.addr)
			require.NoError(t, err)
			defer conn.Close()
			_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			conns[i] = conn
		}
		began := time.Now()
		assert.NoError(t, recv(t, stopAsync(s, wait, nil), "Stop"))
		took := time.Since(began)
		for range n {
			recv(t, handlers, "handler returned")
		}
		for _, conn := range conns {
			_, err := conn.Read(make([]byte, 1))
			assert.Error(t, err, "a hijacked connection is closed")
		}
		t.Logf("%d hijacked connections: Stop took %v", n, took)
		assert.Less(t, took, wait/2)
		assert.NoError(t, r.startErr(t))
		goleak.VerifyNone(t)
	})

	t.Run("2000 idle connections", func(t *testing.T) {
		// Half never sent a byte, half are keep-alive connections after a
		// response: all are closed after the grace, none holds the stop.
		const n = 2000
		var lim syscall.Rlimit
		require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
		if need := uint64(2*n + 200); lim.Cur < need {
			lim.Cur = min(need, lim.Max)
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < need {
				t.Skipf("%d idle connections need %d file descriptors, and the limit is %d (%v)", n, need, lim.Cur, err)
			}
		}
		accepted := make(chan struct{}, n)
		s := New("127.0.0.1:0", okHandler, WithConnState(func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				accepted <- struct{}{}
			}
		}))
		r := start(t, s)
		conns := make([]net.Conn, n)
		for i := range conns {
			conn, err := net.Dial("tcp", r.addr)
			require.NoError(t, err)
			defer conn.Close()
			conns[i] = conn
			if i%2 == 1 {
				resp := rawRequest(t, conn, bufio.NewReader(conn), "/")
				require.Equal(t, http.StatusOK, resp.StatusCode)
			}
		}
		for range n {
			recv(t, accepted, "connection accepted")
		}
		began := time.Now()
		assert.NoError(t, recv(t, stopAsync(s, wait, nil), "Stop"))
		took := time.Since(began)
		for i, conn := range conns {
			_, err := conn.Read(make([]byte, 1))
			assert.ErrorIs(t, err, io.EOF, "connection %d is closed", i)
		}
		t.Logf("%d idle connections: Stop took %v", n, took)
		assert.Less(t, took, grace+2*time.Second)
		assert.NoError(t, r.startErr(t))
		goleak.VerifyNone(t)
	})

	t.Run("TLS listener with hijacked and idle connections", func(t *testing.T) {
		// On connections a TLS listener returned (which the server does not
		// wrap), idle connections are closed after the grace and hijacked
		// ones are told while their handler runs.
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		done := make(chan struct{}, 1)
		s := New("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/ws" {
				_, _ = io.WriteString(w, "ok")
				return
			}
			defer func() { done <- struct{}{} }()
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
			_ = brw.Flush()
			_, _ = io.Copy(io.Discard, brw)
		}), WithListener(tls.NewListener(inner, tlsConfig(cert))), WithHijackNotify(func(c net.Conn) { _ = c.Close() }))
		r := start(t, s)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		res := get(&http.Client{Transport: tr, Timeout: wait}, "https://"+r.addr+"/")
		require.NoError(t, res.err)
		ws, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: pool})
		require.NoError(t, err)
		defer ws.Close()
		_, err = io.WriteString(ws, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(ws), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)

		began := time.Now()
		assert.NoError(t, recv(t, stopAsync(s, wait, nil), "Stop"))
		took := time.Since(began)
		recv(t, done, "hijacking handler returned")
		t.Logf("TLS listener: Stop took %v", took)
		assert.Less(t, took, grace+time.Second)
		assert.NoError(t, r.startErr(t))
		tr.CloseIdleConnections()
		goleak.VerifyNone(t)
	})
}
