package benchmarks

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestPeers runs each scenario once, small, on each peer and on each variant
// of graceful, so that a broken benchmark fails in CI rather than at
// benchmark time.
func TestPeers(t *testing.T) {
	for _, k := range kinds {
		t.Run("graceful/"+k.name, func(t *testing.T) {
			if err := gracefulStartStop(k, 100); err != nil {
				t.Fatalf("startStop(100): have %v, want nil", err)
			}
		})
	}
	for _, independent := range []bool{false, true} {
		t.Run(fmt.Sprintf("graceful/independent=%v", independent), func(t *testing.T) {
			took, err := gracefulSlowStart(3, time.Millisecond, independent)
			if err != nil {
				t.Fatalf("slowStart(3, 1ms): have %v, want nil", err)
			}
			if took < time.Millisecond {
				t.Errorf("slowStart(3, 1ms): ready after %v, want at least 1ms", took)
			}
			took, err = gracefulStopTwo(time.Millisecond, independent)
			if err != nil {
				t.Fatalf("stopTwo(1ms): have %v, want nil", err)
			}
			// In a chain the HTTP server stops only after the gRPC server,
			// which needs it, has stopped: the two stops, 1 ms each, add up.
			if want := map[bool]time.Duration{false: 2 * time.Millisecond, true: time.Millisecond}[independent]; took < want {
				t.Errorf("stopTwo(1ms): stopped after %v, want at least %v", took, want)
			}
		})
	}
	t.Run("graceful/shutdown", func(t *testing.T) {
		if _, err := gracefulShutdown(); err != nil {
			t.Errorf("shutdown: have %v, want nil", err)
		}
	})
	for _, p := range peers {
		t.Run(p.name, func(t *testing.T) {
			if err := p.startStop(100); err != nil {
				t.Fatalf("startStop(100): have %v, want nil", err)
			}
			took, err := p.slowStart(3, time.Millisecond)
			if err != nil {
				t.Fatalf("slowStart(3, 1ms): have %v, want nil", err)
			}
			if took < time.Millisecond {
				t.Errorf("slowStart(3, 1ms): ready after %v, want at least 1ms", took)
			}
			took, err = p.stopTwo(time.Millisecond)
			if err != nil {
				t.Fatalf("stopTwo(1ms): have %v, want nil", err)
			}
			if took < time.Millisecond {
				t.Errorf("stopTwo(1ms): stopped after %v, want at least 1ms", took)
			}
			if _, err := shutdowns[p.name](); err != nil {
				t.Errorf("shutdown: have %v, want nil", err)
			}
		})
	}
}
