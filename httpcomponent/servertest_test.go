package httpcomponent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/graceful-go/graceful/internal/servertest"
)

// TestServerTable runs the table of behaviours that grpccomponent passes too.
func TestServerTable(t *testing.T) {
	servertest.Run(t, servertest.Factory{
		New: func(t *testing.T, c servertest.Config) servertest.Server {
			opts := []Option{WithListener(c.Listener)}
			if c.WithHealth {
				opts = append(opts, WithHealth(c.Health))
			}
			if c.WithTLS {
				opts = append(opts, WithTLS(c.TLS))
			}
			return New(c.Addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.Handler != nil {
					c.Handler(r.Context())
				}
				if err := r.Context().Err(); err != nil {
					http.Error(w, err.Error(), http.StatusServiceUnavailable)
					return
				}
				_, _ = io.WriteString(w, "done")
			}), opts...)
		},
		Call: func(ctx context.Context, addr net.Addr, roots *x509.CertPool) error {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			scheme := "http"
			if roots != nil {
				scheme, tr.TLSClientConfig = "https", &tls.Config{RootCAs: roots}
			}
			body, status, err := getBody(ctx, &http.Client{Transport: tr}, scheme+"://"+addr.String()+"/call")
			if err != nil {
				return err
			}
			if status != http.StatusOK || body != "done" {
				return fmt.Errorf("answered %d %q", status, body)
			}
			return nil
		},
		Health: func(ctx context.Context, addr net.Addr) (servertest.Health, error) {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			body, status, err := getBody(ctx, &http.Client{Transport: tr}, "http://"+addr.String()+"/readyz")
			switch {
			case err != nil:
				return 0, err
			case status == http.StatusOK && strings.HasPrefix(body, "ok"):
				return servertest.HealthServing, nil
			case status == http.StatusServiceUnavailable && strings.HasPrefix(body, "not ready"):
				return servertest.HealthNotServing, nil
			case body == "done":
				return servertest.HealthAbsent, nil // the handler answered
			}
			return 0, fmt.Errorf("/readyz answered %d %q", status, body)
		},
		Prefix: "httpcomponent: ",
		Cut:    "1 request(s) running",
	})
}

func getBody(ctx context.Context, c *http.Client, url string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}
