package lifecycletest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// spy is a testing.TB that records failures and cleanups instead of acting
// on them, so that tests can check what the helpers report. Methods it does
// not override go to the real test.
type spy struct {
	testing.TB
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	errs     []string
	cleanups []func()
	out      bytes.Buffer
}

func newSpy(t testing.TB) *spy {
	ctx, cancel := context.WithCancel(context.Background())
	return &spy{TB: t, ctx: ctx, cancel: cancel}
}

func (s *spy) Helper()                  {}
func (s *spy) Context() context.Context { return s.ctx }

func (s *spy) Errorf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// Fatalf records the failure and ends the calling goroutine, as FailNow does:
// call the helper under test in a goroutine of its own.
func (s *spy) Fatalf(format string, args ...any) {
	s.Errorf(format, args...)
	runtime.Goexit()
}

func (s *spy) Cleanup(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, fn)
}

func (s *spy) Output() io.Writer { return &lockedWriter{s: s} }

// end ends the spied test as the testing package does: the context is
// cancelled, then the cleanups run, last registered first.
func (s *spy) end() {
	s.cancel()
	s.mu.Lock()
	fns := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// failures returns what was reported with Errorf or Fatalf.
func (s *spy) failures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...)
}

func (s *spy) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

type lockedWriter struct{ s *spy }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.out.Write(p)
}

// wantFailure checks that s reported exactly one failure, containing every
// one of parts.
func wantFailure(t *testing.T, s *spy, parts ...string) {
	t.Helper()
	fs := s.failures()
	if len(fs) != 1 {
		t.Fatalf("want 1 failure reported, have %d: %q", len(fs), fs)
	}
	for _, p := range parts {
		if !strings.Contains(fs[0], p) {
			t.Errorf("want the failure to contain %q, have:\n%s", p, fs[0])
		}
	}
}

// wantNoFailure checks that s reported nothing.
func wantNoFailure(t *testing.T, s *spy) {
	t.Helper()
	if fs := s.failures(); len(fs) > 0 {
		t.Fatalf("want no failure reported, have %d:\n%s", len(fs), strings.Join(fs, "\n"))
	}
}
