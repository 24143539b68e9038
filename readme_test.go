package graceful_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/graceful-go/graceful/grpccomponent"
	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
)

// TestREADMECode: every Go block of README.md is code that compiles: it
// stands, line for line (spacing aside), in a Go file of the repository,
// where the compiler checks it (the functions below, the examples, the
// packages' tests). A README snippet that drifts from the API fails here.
func TestREADMECode(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]string
	var cur []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(string(readme)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && strings.HasPrefix(line, "```go"):
			in, cur = true, nil
		case in && strings.HasPrefix(line, "```"):
			in = false
			blocks = append(blocks, normalize(cur))
		case in:
			cur = append(cur, line)
		}
	}
	if len(blocks) == 0 {
		t.Fatal("no Go block in README.md")
	}
	var files [][]string
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files = append(files, normalize(strings.Split(string(b), "\n")))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range blocks {
		found := false
		for _, f := range files {
			if containsLines(f, b) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README.md Go block %d is in no Go file of the repository (so nothing compiles it):\n%s", i+1, strings.Join(b, "\n"))
		}
	}
}

// normalize drops blank lines and makes all spacing one space.
func normalize(lines []string) []string {
	var out []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}

func containsLines(file, block []string) bool {
	for i := 0; i+len(block) <= len(file); i++ {
		j := 0
		for j < len(block) && file[i+j] == block[j] {
			j++
		}
		if j == len(block) {
			return true
		}
	}
	return false
}

// The README's snippets that are not whole programs or tests elsewhere,
// compiled here (never run: they would bind ports and wait for signals).

func readmeComponent() {
	type Component interface {
		Start(ctx context.Context) error // runs for the life of the component
		Stop(ctx context.Context) error  // asks it to end, bounded by ctx
	}
	var _ Component = lifecycle.New()
}

type readmeJob struct{}

func readmeAdapters(g *lifecycle.Group, db *sql.DB, tp interface{ Shutdown(context.Context) error }, jobs <-chan readmeJob, process func(context.Context, readmeJob)) {
	g.Add("db", lifecycle.Closer(db))
	g.Add("tracer", lifecycle.OnStop(tp.Shutdown), lifecycle.After("db"))
	g.Add("worker", lifecycle.Worker(func(ctx context.Context, stopping <-chan struct{}) error {
		for {
			select {
			case <-stopping:
				return nil // take nothing new
			case job := <-jobs:
				process(ctx, job) // ctx stays live: the job in hand completes
			}
		}
	}), lifecycle.After("db", "tracer"), lifecycle.StopTimeout(10*time.Second))
}

// readmePB stands for generated gRPC code.
type readmePB struct{}

func (readmePB) RegisterGreeterServer(s *grpc.Server, srv any) {}

type greeter struct{}

func readmeServers(mux *http.ServeMux) {
	var pb readmePB
	g := lifecycle.New() // SIGINT/SIGTERM, 25 s budget, 5 s drain

	web := httpcomponent.New(":8080", mux, httpcomponent.WithHealth(g)) // also serves g's /readyz and /livez
	web.HTTP().ReadHeaderTimeout = 5 * time.Second                      // the *http.Server's settings, before Start

	rpc := grpccomponent.New(":9090", grpccomponent.WithHealth(g)) // grpc.health.v1, driven by g
	pb.RegisterGreeterServer(rpc.GRPC(), greeter{})

	g.Add("web", web)
	g.Add("grpc", rpc)
	os.Exit(lifecycle.ExitCode(g.Run(context.Background())))
}

func readmeSSE(mux *http.ServeMux, events <-chan string) {
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		for {
			select {
			case ev := <-events:
				fmt.Fprintf(w, "data: %s\n\n", ev)
				rc.Flush()
			case <-httpcomponent.Stopping(r.Context()): // the stop began
				fmt.Fprint(w, "event: bye\ndata: reconnect\n\n")
				rc.Flush()
				return // the stop does not wait for the budget
			case <-r.Context().Done(): // the client left, or the budget ran out
				return
			}
		}
	})
}

func readmeRestart(g *lifecycle.Group, refresh func(context.Context) error) {
	g.Add("refresher", lifecycle.Func(refresh),
		lifecycle.Restart(lifecycle.RestartPolicy{
			Backoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second, // doubles, less up to 20 % jitter
			MaxRestarts: 5, Window: time.Minute, // a 6th failure within a minute gives up
		}),
		lifecycle.Optional(), // giving up leaves the Group running, degraded
	)
}

var _ = []any{readmeComponent, readmeAdapters, readmeServers, readmeSSE, readmeRestart}
