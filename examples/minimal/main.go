// Command minimal is the shortest real program with graceful: an HTTP server
// and a background worker under one lifecycle.Group, with the library's
// defaults (SIGINT and SIGTERM begin the shutdown, a 5 s drain delay inside a
// 25 s shutdown budget, a second signal forces it).
//
//	ADDR=127.0.0.1:8080 go run ./examples/minimal
package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/graceful-go/graceful/httpcomponent"
	"github.com/graceful-go/graceful/lifecycle"
)

func main() {
	g := lifecycle.New()

	g.Add("worker", lifecycle.Func(func(ctx context.Context) error {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				slog.Info("tick")
			}
		}
	}))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	g.Add("http", httpcomponent.New(cmp.Or(os.Getenv("ADDR"), "127.0.0.1:8080"), mux, httpcomponent.WithHealth(g))) // also serves /readyz and /livez

	os.Exit(lifecycle.ExitCode(g.Run(context.Background())))
}
