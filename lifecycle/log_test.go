package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files of the log tests")

// durations matches the durations in a log line, which vary from run to run.
var durations = regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|ms|s|m)\b`)

// goldenLogger logs in the text format without times, durations replaced
// by D and stacks left out: what is left is the same every run.
func goldenLogger(buf *bytes.Buffer, mu *sync.Mutex) *slog.Logger {
	h := slog.NewTextHandler(&lockedWriter{w: buf, mu: mu}, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			switch {
			case a.Key == slog.TimeKey:
				return slog.Attr{}
			case a.Key == "stacks" || a.Key == "stack":
				return slog.String(a.Key, "<stacks>")
			case a.Value.Kind() == slog.KindDuration:
				return slog.String(a.Key, "D")
			case a.Value.Kind() == slog.KindString:
				return slog.String(a.Key, durations.ReplaceAllString(a.Value.String(), "D"))
			}
			return a
		},
	})
	return slog.New(h)
}

// TestLogGolden: what the library logs for a clean stop, a drain, a stuck
// stop and a failure, against files in testdata (go test -run
// TestLogGolden -update rewrites them). And at INFO, about two lines per
// component.
func TestLogGolden(t *testing.T) {
	boom := errors.New("queue unreachable")
	tests := []struct {
		name string
		opts []Option
		add  func(g *Group, release chan struct{})
		end  func(g *Group, cancel context.CancelFunc)
	}{
		{"clean", nil, func(g *Group, _ chan struct{}) {
			g.Add("db", OnStop(func(context.Context) error { return nil }))
			g.Add("worker", Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
		}, func(_ *Group, cancel context.CancelFunc) { cancel() }},
		{"drain", []Option{WithDrainDelay(50 * time.Millisecond)}, func(g *Group, _ chan struct{}) {
			g.Add("http", readyComp{newComp(&rec{}, "http")})
		}, func(_ *Group, cancel context.CancelFunc) { cancel() }},
		{"stuck", []Option{WithShutdownTimeout(300 * time.Millisecond)}, func(g *Group, release chan struct{}) {
			g.Add("db", OnStop(func(context.Context) error { return nil }))
			g.Add("stuck", OnStop(func(context.Context) error { <-release; return nil }))
		}, func(_ *Group, cancel context.CancelFunc) { cancel() }},
		{"failure", nil, func(g *Group, _ chan struct{}) {
			g.Add("db", OnStop(func(context.Context) error { return nil }))
			g.Add("consumer", Func(func(context.Context) error { <-g.Ready(); return boom }))
		}, func(*Group, context.CancelFunc) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			var mu sync.Mutex
			release := make(chan struct{})
			defer close(release)
			g := New(append([]Option{WithSignals(), WithDrainDelay(0), WithLogger(goldenLogger(&buf, &mu))}, tt.opts...)...)
			tt.add(g, release)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := runAsync(t, g, ctx)
			closed(t, g.Ready(), generous, "ready")
			tt.end(g, cancel)
			wait(t, done, generous, "Run")
			mu.Lock()
			got := buf.String()
			mu.Unlock()

			file := filepath.Join("testdata", "log-"+tt.name+".golden")
			if *update {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(file, []byte(got), 0o644))
			}
			want, err := os.ReadFile(file)
			require.NoError(t, err, "run with -update to create it")
			assert.Equal(t, string(want), got)

			var info, comps int
			for _, line := range strings.Split(got, "\n") {
				if strings.Contains(line, "level=INFO") && strings.Contains(line, "component=") {
					info++
				}
			}
			comps = len(g.units)
			assert.LessOrEqual(t, info, 2*comps+1, "INFO lines about components: about two per component")
		})
	}
}

// TestEventOrder: for every component, starting < ready < stopping <
// stopped; and across components, a dependent's stopped before its
// dependency's stopping; under -race, many times.
func TestEventOrder(t *testing.T) {
	for i := range 50 {
		g, ev := testGroup()
		g.Add("db", OnStop(func(context.Context) error { return nil }))
		g.Add("cache", readyComp{newComp(&rec{}, "cache")}, After("db"))
		g.Add("api", Func(func(ctx context.Context) error { <-ctx.Done(); return nil }), After("db", "cache"))
		g.Add("worker", Worker(func(ctx context.Context, stopping <-chan struct{}) error { <-stopping; return nil }), After("db"))
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(t, g, ctx)
		closed(t, g.Ready(), generous, "ready")
		cancel()
		require.NoError(t, wait(t, done, generous, "Run"))
		pos := map[string]int{}
		for k, e := range ev.all() {
			key := e.Kind.String() + ":" + e.Component
			if _, seen := pos[key]; !seen {
				pos[key] = k
			}
		}
		for _, c := range []string{"db", "cache", "api", "worker"} {
			order := []string{"starting:" + c, "ready:" + c, "stopping:" + c, "exited:" + c, "stopped:" + c}
			for j := 1; j < len(order); j++ {
				assert.Less(t, pos[order[j-1]], pos[order[j]], "run %d: %s before %s", i, order[j-1], order[j])
			}
		}
		for _, dep := range [][2]string{{"cache", "db"}, {"api", "db"}, {"api", "cache"}, {"worker", "db"}} {
			assert.Less(t, pos["stopped:"+dep[0]], pos["stopping:"+dep[1]], "run %d: %s stopped before %s stopping", i, dep[0], dep[1])
			assert.Less(t, pos["ready:"+dep[1]], pos["starting:"+dep[0]], "run %d: %s ready before %s starting", i, dep[1], dep[0])
		}
		assert.Less(t, pos["phase:"], pos["stopping:api"])
	}
}
