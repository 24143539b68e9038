package httpcomponent

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait is the generous bound of every wait of a test: the machine is shared
// and slow, and a test that hangs must fail rather than time out.
const wait = 10 * time.Second

// running is a Server whose Start runs in a goroutine.
type running struct {
	s    *Server
	url  string
	addr string
	done chan struct{}
	err  error // what Start returned, once done is closed
}

// start runs s.Start in a goroutine, waits until s is ready, and stops it at
// the end of the test.
func start(t *testing.T, s *Server) *running {
	t.Helper()
	r := &running{s: s, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Start(context.Background())
	}()
	select {
	case <-s.Ready():
	case <-r.done:
		t.Fatalf("Start returned before ready: %v", r.err)
	case <-time.After(wait):
		t.Fatal("not ready in time")
	}
	r.addr = s.Addr().String()
	r.url = "http://" + r.addr
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = s.Stop(ctx)
		<-r.done
	})
	return r
}

// startErr waits for Start to return and returns its error.
func (r *running) startErr(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(wait):
		t.Fatal("Start did not return")
		return nil
	}
}

// returned reports whether Start has returned.
func (r *running) returned() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// newServer returns a Server on a loopback port chosen by the system.
func newServer(h http.Handler, opts ...Option) *Server {
	return New("127.0.0.1:0", h, opts...)
}

// client returns a keep-alive client whose connections are closed at the end
// of the test.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

// result is the outcome of one request.
type result struct {
	status int
	body   string
	close  bool // the response said Connection: close
	proto  int
	err    error
}

func get(c *http.Client, url string) result {
	resp, err := c.Get(url)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, body: string(b), close: resp.Close, proto: resp.ProtoMajor, err: err}
}

// goGet sends a GET in a goroutine and returns where its result will be.
func goGet(c *http.Client, url string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- get(c, url) }()
	return ch
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("%s: nothing within %v", what, wait)
		var zero T
		return zero
	}
}

// stopAsync calls s.Stop with a context that ends after budget, and returns
// where its error will be.
func stopAsync(s *Server, budget time.Duration, cause error) <-chan error {
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeoutCause(context.Background(), budget, cause)
		defer cancel()
		ch <- s.Stop(ctx)
	}()
	return ch
}

// rawRequest writes an HTTP/1.1 GET for path on conn and reads the response.
func rawRequest(t *testing.T, conn net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	_, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp
}

// testCert returns a self-signed certificate for 127.0.0.1 and a pool that
// trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "httpcomponent test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
