package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

type tableInput struct {
	cores          string
	loadStart      string
	commit         string
	runs, loadRuns int
	benches        benchResults
	idle           map[string]map[string][]time.Duration
	load           map[string]map[string]*loadResult
	hang           map[string]hangResult
}

// printTable writes the results as one markdown table: a row per measure,
// a column per peer, each peer's figure followed by its ratio to graceful's.
func printTable(w io.Writer, in tableInput) {
	fmt.Fprintf(w, "Run %s UTC at %s on %s cores (nproc), %s, %s; load average %s at the start, %s at the end.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), in.commit, in.cores, goVersion(), cpuModel(), in.loadStart, loadAvg())
	head := []string{"measure"}
	for _, p := range peerNames {
		head = append(head, titles[p])
	}
	row(w, head...)
	row(w, strings.Split(strings.Repeat("---,", len(head)), ",")[:len(head)]...)

	benchRow2(w, in.benches, "SlowStart/graph=independent", "SlowStart", "ms-to-ready",
		"start of 20 independent components that take 5 ms each to be ready (graceful: After()), ms until all ready", "%.1f")
	benchRow2(w, in.benches, "SlowStart/graph=chain", "SlowStart", "ms-to-ready",
		"… graceful as a chain (its default without After)", "%.1f")
	benchRow2(w, in.benches, "StopTwo/graph=independent", "StopTwo", "ms-to-stop",
		"stop of an HTTP and a gRPC server, each finishing a request that ends 100 ms after its own stop began (graceful: After()), ms", "%.1f")
	benchRow2(w, in.benches, "StopTwo/graph=chain", "StopTwo", "ms-to-stop",
		"… graceful as a chain (its default without After)", "%.1f")
	benchRow(w, in.benches, "Shutdown", "µs-to-stop", "in process: stop of an idle HTTP server and a worker, µs from the request to stop until return", "%.1f")

	idleRow := func(s setup, label string) {
		cells := []string{fmt.Sprintf("%s, ms (median of %d)", label, in.runs)}
		base := median(in.idle[s.name]["graceful"])
		for _, p := range peerNames {
			ds := in.idle[s.name][p]
			if len(ds) == 0 {
				cells = append(cells, "—")
				continue
			}
			cells = append(cells, withRatio(fmt.Sprintf("%.1f", ms(median(ds))), ms(median(ds)), ms(base), p))
		}
		row(w, cells...)
	}
	idleRow(defaults, "idle SIGTERM → exit, as configured by default (graceful: 5 s drain delay)")
	idleRow(noDrain, "idle SIGTERM → exit, graceful with WithDrainDelay(0)")
	idleRow(quiet, "idle SIGTERM → exit, graceful with WithDrainDelay(0) and WithLogger(nil), fx with NopLogger")

	loadRow := func(s setup, label string) {
		cells := []string{fmt.Sprintf("%s: lost of sent (%d runs)", label, in.loadRuns)}
		for _, p := range peerNames {
			r := in.load[s.name][p]
			if r == nil {
				cells = append(cells, "—")
				continue
			}
			cell := fmt.Sprintf("%d of %d", r.Lost, r.sent())
			if r.Other > 0 {
				cell += fmt.Sprintf(", %d not 200", r.Other)
			}
			cells = append(cells, cell)
		}
		row(w, cells...)
	}
	loadRow(defaults, "SIGTERM under load, as configured by default (graceful: 5 s drain delay)")
	loadRow(noDrain, "SIGTERM under load, graceful with WithDrainDelay(0)")

	cells := []string{"worker's stop hangs, budget 1 s (graceful: 200 ms drain inside it): SIGTERM → exit"}
	for _, p := range peerNames {
		r, ok := in.hang[p]
		switch {
		case !ok:
			cells = append(cells, "—")
		case r.exited:
			cells = append(cells, fmt.Sprintf("%.2f s (%s)", r.after.Seconds(), r.code))
		default:
			cells = append(cells, fmt.Sprintf("never (killed at %v)", hangLimit))
		}
	}
	row(w, cells...)

	if len(in.benches) > 0 {
		fmt.Fprint(w, "\nStart+stop per component (add, start, wait until all are ready, stop, wait until all have returned), divided by N:\n\n")
		printStartStop(w, in.benches)
		fmt.Fprint(w, "\nSupervision (graceful only):\n\n")
		printSupervision(w, in.benches)
	}
}

func benchRow(w io.Writer, b benchResults, bench, unit, label, format string) {
	benchRow2(w, b, bench, bench, unit, label, format)
}

// benchRow2 is benchRow where graceful's figure comes from the benchmark
// mine and the peers' from theirs (graceful has variants, the peers not).
func benchRow2(w io.Writer, b benchResults, mine, theirs, unit, label, format string) {
	cells := []string{label}
	base, _ := b.get(mine, "graceful", unit)
	for _, p := range peerNames {
		bench := theirs
		if p == "graceful" {
			bench = mine
		}
		v, ok := b.get(bench, p, unit)
		if !ok {
			cells = append(cells, "—")
			continue
		}
		cells = append(cells, withRatio(fmt.Sprintf(format, v), v, base, p))
	}
	row(w, cells...)
}

// sizes and kinds are those of BenchmarkStartStop.
var (
	sizes = []string{"1", "100", "1000", "10000"}
	kinds = []struct{ name, title string }{
		{"plain", "a trivial Component"},
		{"plain-after", "a trivial Component, After()"},
		{"func", "lifecycle.Func"},
		{"worker", "lifecycle.Worker"},
	}
)

// startStopTarget is the target: graceful's start+stop per component
// at most this many times oklog/run's, in time and in allocations.
const startStopTarget = 2.0

// printStartStop writes the start+stop cost per component as a table of its
// own: a row per N and kind of graceful component, graceful's figures, then
// oklog/run's and graceful's ratio to them (the target), then fx's and
// errgroup's.
func printStartStop(w io.Writer, b benchResults) {
	row(w, "N", "graceful component", "graceful ns / B / allocs", "oklog/run ns / B / allocs",
		"graceful ÷ oklog/run: time, allocs", fmt.Sprintf("within %.0f×?", startStopTarget),
		"fx ns / B / allocs", "errgroup ns / B / allocs")
	row(w, "---:", "---", "---:", "---:", "---:", "---", "---:", "---:")
	triple := func(bench, peer string) (string, float64, float64, bool) {
		ns, ok1 := b.get(bench, peer, "ns/component")
		by, ok2 := b.get(bench, peer, "B/component")
		al, ok3 := b.get(bench, peer, "allocs/component")
		if !ok1 || !ok2 || !ok3 {
			return "—", 0, 0, false
		}
		return fmt.Sprintf("%.0f / %.0f / %.1f", ns, by, al), ns, al, true
	}
	for _, n := range sizes {
		peerBench := "StartStop/n=" + n
		ok, okNs, okAl, okOK := triple(peerBench, "oklog")
		fx, _, _, _ := triple(peerBench, "fx")
		eg, _, _, _ := triple(peerBench, "errgroup")
		for _, k := range kinds {
			gr, ns, al, grOK := triple(peerBench+"/kind="+k.name, "graceful")
			ratio, met := "—", "—"
			if grOK && okOK && okNs > 0 && okAl > 0 {
				rt, ra := ns/okNs, al/okAl
				ratio = fmt.Sprintf("×%.2f, ×%.2f", rt, ra)
				met = "no"
				switch {
				case rt <= startStopTarget && ra <= startStopTarget:
					met = "yes"
				case rt <= startStopTarget:
					met = "time only"
				case ra <= startStopTarget:
					met = "allocs only"
				}
			}
			row(w, thousands(n), k.title, gr, ok, ratio, met, fx, eg)
		}
	}
}

// printSupervision writes graceful's own figures for supervision: a restart,
// a Status call, and the pprof labels' share of a component's start+stop.
func printSupervision(w io.Writer, b benchResults) {
	row(w, "measure", "graceful")
	row(w, "---", "---:")
	if us, ok := b.get("Restart", "graceful", "µs/restart"); ok {
		al, _ := b.get("Restart", "graceful", "allocs/restart")
		by, _ := b.get("Restart", "graceful", "B/restart")
		row(w, "a lifecycle.Func worker fails, is stopped, started again (zero backoff) and ready: per restart",
			fmt.Sprintf("%.1f µs, %.0f B, %.1f allocs", us, by, al))
	}
	for _, n := range []string{"10", "1000"} {
		bench := "Status/n=" + n
		if ns, ok := b.get(bench, "graceful", "ns/call"); ok {
			al, _ := b.get(bench, "graceful", "allocs/call")
			by, _ := b.get(bench, "graceful", "B/call")
			row(w, fmt.Sprintf("Group.Status() with %s components, per call", thousands(n)),
				fmt.Sprintf("%.0f ns, %.0f B, %.1f allocs", ns, by, al))
		}
	}
	if ns, ok := b.get("Labels", "graceful", "ns/component"); ok {
		al, _ := b.get("Labels", "graceful", "allocs/component")
		by, _ := b.get("Labels", "graceful", "B/component")
		share := ""
		if all, ok := b.get("StartStop/n=1000/kind=plain", "graceful", "ns/component"); ok && all > 0 {
			allAl, _ := b.get("StartStop/n=1000/kind=plain", "graceful", "allocs/component")
			share = fmt.Sprintf(" (%.0f %% of the time and %.0f %% of the allocations of a trivial component's start+stop at N = 1 000)",
				100*ns/all, 100*al/allAl)
		}
		row(w, "pprof labels per component, in isolation (pprof.Labels, WithLabels, SetGoroutineLabels ×2)",
			fmt.Sprintf("%.0f ns, %.0f B, %.1f allocs%s", ns, by, al, share))
	}
}

// thousands writes n with a space between thousands, as in the README.
func thousands(n string) string {
	if len(n) <= 3 {
		return n
	}
	return thousands(n[:len(n)-3]) + " " + n[len(n)-3:]
}

// withRatio appends the ratio of v to graceful's base, except in graceful's
// own column.
func withRatio(s string, v, base float64, peer string) string {
	if peer == "graceful" || base == 0 {
		return s
	}
	r := v / base
	if r < 0.1 {
		return fmt.Sprintf("%s (×%.2g)", s, r)
	}
	return fmt.Sprintf("%s (×%.2f)", s, r)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
}
