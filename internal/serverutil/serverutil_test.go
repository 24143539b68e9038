package serverutil

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/graceful-go/graceful/lifecycle"
)

func TestCutCause(t *testing.T) {
	other := errors.New("start's context ended")
	tests := []struct {
		name  string
		cause error
		is    []error
		exit  int
	}{
		{"a Group's timeout", lifecycle.ErrTimeout, []error{lifecycle.ErrTimeout}, lifecycle.ExitTimeout},
		{"a Group's forced stop", lifecycle.ErrForced, []error{lifecycle.ErrForced}, lifecycle.ExitForced},
		{"a plain deadline", context.DeadlineExceeded, []error{lifecycle.ErrTimeout, context.DeadlineExceeded}, lifecycle.ExitTimeout},
		{"any other cause", other, []error{lifecycle.ErrTimeout, other}, lifecycle.ExitTimeout},
		{"no cause", nil, []error{lifecycle.ErrTimeout}, lifecycle.ExitTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			have := CutCause(tt.cause)
			for _, want := range tt.is {
				assert.ErrorIs(t, have, want)
			}
			assert.Equal(t, tt.exit, lifecycle.ExitCode(have))
		})
	}
	assert.NotErrorIs(t, CutCause(lifecycle.ErrTimeout), lifecycle.ErrForced)
}

func TestCheckTLS(t *testing.T) {
	assert.ErrorContains(t, CheckTLS(nil), "WithTLS(nil)")
	assert.ErrorContains(t, CheckTLS(&tls.Config{}), "no certificate")
	assert.NoError(t, CheckTLS(&tls.Config{Certificates: []tls.Certificate{{}}}))
	assert.NoError(t, CheckTLS(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }}))
	assert.NoError(t, CheckTLS(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, nil }}))
}

func TestCheckAddr(t *testing.T) {
	assert.ErrorContains(t, CheckAddr("", false), "no address")
	assert.NoError(t, CheckAddr("", true))
	assert.NoError(t, CheckAddr(":0", false))
}
