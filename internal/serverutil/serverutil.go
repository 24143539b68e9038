// Package serverutil holds the rules that the HTTP and gRPC components share,
// written once so that both behave alike: how the error of a stop that cut
// work is classified, what a TLS configuration must hold, and which address a
// server binds.
package serverutil

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/graceful-go/graceful/lifecycle"
)

// CutCause returns what the error of a Stop that cut work wraps, given the
// cause it was cut with: cause itself when it matches [lifecycle.ErrTimeout]
// or [lifecycle.ErrForced] (the causes of a Group's stop context), and
// otherwise both lifecycle.ErrTimeout and cause (a context.WithTimeout that
// ran out, the end of Start's context), so that a stop cut short is always
// classified by lifecycle.ExitCode.
func CutCause(cause error) error {
	if cause == nil {
		return lifecycle.ErrTimeout
	}
	if errors.Is(cause, lifecycle.ErrTimeout) || errors.Is(cause, lifecycle.ErrForced) {
		return cause
	}
	return fmt.Errorf("%w: %w", lifecycle.ErrTimeout, cause)
}

// CheckTLS reports what is wrong with cfg as the configuration of a TLS
// server: nil, or without a certificate (no Certificates, GetCertificate or
// GetConfigForClient).
func CheckTLS(cfg *tls.Config) error {
	if cfg == nil {
		return errors.New("WithTLS(nil): a TLS server needs a *tls.Config with a certificate")
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return errors.New("WithTLS: the *tls.Config has no certificate (Certificates, GetCertificate or GetConfigForClient)")
	}
	return nil
}

// CheckAddr reports an empty address with no listener to serve on instead.
func CheckAddr(addr string, haveListener bool) error {
	if addr == "" && !haveListener {
		return errors.New(`no address to listen on: New was given "" and no listener (WithListener)`)
	}
	return nil
}
