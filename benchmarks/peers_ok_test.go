package benchmarks

import (
	"testing"
	"time"
)

// TestPeers runs each scenario once, small, on each peer, so that a broken
// benchmark fails in CI rather than at benchmark time.
func TestPeers(t *testing.T) {
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
			if _, err := shutdowns[p.name](); err != nil {
				t.Errorf("shutdown: have %v, want nil", err)
			}
		})
	}
}
