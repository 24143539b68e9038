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

	for _, n := range []string{"10", "1000", "10000"} {
		bench := "StartStop/n=" + n
		label := map[string]string{"10": "10", "1000": "1 000", "10000": "10 000"}[n]
		benchRow(w, in.benches, bench, "ns/component", "start+stop of "+label+" trivial components: ns per component", "%.0f")
		benchRow(w, in.benches, bench, "allocs/component", "… allocs per component", "%.1f")
	}
	benchRow(w, in.benches, "SlowStart", "ms-to-ready", "start of 20 components that take 5 ms each: ms until all ready", "%.1f")
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
}

func benchRow(w io.Writer, b benchResults, bench, unit, label, format string) {
	cells := []string{label}
	base, _ := b.get(bench, "graceful", unit)
	for _, p := range peerNames {
		v, ok := b.get(bench, p, unit)
		if !ok {
			cells = append(cells, "—")
			continue
		}
		cells = append(cells, withRatio(fmt.Sprintf(format, v), v, base, p))
	}
	row(w, cells...)
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
