// Command compare runs the benchmark application of each peer (graceful,
// oklog/run, fx, errgroup) as a child process on a free loopback port and
// measures, in the same run:
//
//   - idle: the time from SIGTERM to the process's exit, median of -runs;
//   - load: the requests lost (sent, then reset or closed before a full
//     answer) when SIGTERM arrives under bounded keep-alive load;
//   - hang: whether and when the process exits when the worker's stop hangs,
//     with a shutdown budget of 1 s; a process still running after 15 s is
//     killed.
//
// With -bench it also reads the output of the in-process benchmarks
// (go test -bench in the benchmarks module) and prints everything as one
// markdown table, with ratios to graceful. It is run by run.sh:
//
//	go run ./cmd/compare -bench bench.txt
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// peerNames are the peers in table order; each is a main package under
// cmd/apps.
var peerNames = []string{"graceful", "oklog", "fx", "errgroup"}

// titles are the peers' column titles.
var titles = map[string]string{"graceful": "graceful", "oklog": "oklog/run v1.2.0", "fx": "fx v1.24.0", "errgroup": "errgroup + NotifyContext"}

// A setup is one configuration of the applications for a scenario.
type setup struct {
	name string
	args []string
}

var (
	// defaults is each application as its users would write it: graceful
	// with its 5 s drain delay, 25 s budget and logs, fx with its 15 s
	// StopTimeout and logs, errgroup with a 25 s Shutdown budget, oklog/run
	// with no budget.
	defaults = setup{"defaults", nil}
	// noDrain turns graceful's drain delay off; the other peers have none.
	noDrain = setup{"no drain", []string{"-drain=0"}}
	// quiet also turns the default logs off (graceful and fx log by
	// default, the others never do).
	quiet = setup{"no drain, no logs", []string{"-drain=0", "-quiet"}}
	// hung makes the worker's stop hang, with a 1 s budget everywhere
	// (graceful's drain delay is then its default, a fifth: 200 ms).
	hung = setup{"hang", []string{"-hang", "-budget=1s"}}
)

// hangLimit is how long a process may take to exit before it is killed.
const hangLimit = 15 * time.Second

func main() {
	var (
		dir      = flag.String("dir", ".", "directory of the benchmarks module")
		bench    = flag.String("bench", "", "file with the output of go test -bench, to include in the table")
		runs     = flag.Int("runs", 11, "runs of the idle scenario per peer and setup (median)")
		loadRuns = flag.Int("loadruns", 5, "runs of the load scenario per peer and setup (summed)")
		cores    = flag.String("nproc", "", "number of cores to print (default runtime.NumCPU)")
		load0    = flag.String("loadstart", loadAvg(), "load average to print as the one at the start of the run")
		only     = flag.String("scenarios", "idle,load,hang", "process-level scenarios to run, comma-separated")
	)
	flag.Parse()
	if *cores == "" {
		*cores = fmt.Sprint(runtime.NumCPU())
	}
	scenarios := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		scenarios[strings.TrimSpace(s)] = true
	}
	if !scenarios["idle"] {
		*runs = 0
	}
	if !scenarios["load"] {
		*loadRuns = 0
	}
	if err := run(*dir, *bench, *runs, *loadRuns, *cores, *load0, scenarios["hang"]); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run(dir, benchFile string, runs, loadRuns int, cores, loadStart string, hangToo bool) error {
	var benches benchResults
	if benchFile != "" {
		var err error
		if benches, err = readBench(benchFile); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "graceful-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bins, err := build(dir, tmp)
	if err != nil {
		return err
	}

	idle := map[string]map[string][]time.Duration{}
	for i := range runs {
		progress("idle run %d/%d", i+1, runs)
		for _, s := range []setup{defaults, noDrain, quiet} {
			for _, p := range peerNames {
				d, err := runIdle(bins[p], s.args...)
				if err != nil {
					return fmt.Errorf("idle %s (%s): %w", p, s.name, err)
				}
				if idle[s.name] == nil {
					idle[s.name] = map[string][]time.Duration{}
				}
				idle[s.name][p] = append(idle[s.name][p], d)
			}
		}
	}

	load := map[string]map[string]*loadResult{}
	for i := range loadRuns {
		progress("load run %d/%d", i+1, loadRuns)
		for _, s := range []setup{defaults, noDrain} {
			for _, p := range peerNames {
				r, err := runLoad(bins[p], defaultPlan, s.args...)
				if err != nil {
					return fmt.Errorf("load %s (%s): %w", p, s.name, err)
				}
				if load[s.name] == nil {
					load[s.name] = map[string]*loadResult{}
				}
				if load[s.name][p] == nil {
					load[s.name][p] = &loadResult{}
				}
				load[s.name][p].add(r)
			}
		}
	}

	hang := map[string]hangResult{}
	for _, p := range peerNames {
		if !hangToo {
			break
		}
		progress("hang %s", p)
		r, err := runHang(bins[p], hung.args...)
		if err != nil {
			return fmt.Errorf("hang %s: %w", p, err)
		}
		hang[p] = r
	}

	printTable(os.Stdout, tableInput{
		cores: cores, loadStart: loadStart, commit: commit(dir), runs: runs, loadRuns: loadRuns,
		benches: benches, idle: idle, load: load, hang: hang,
	})
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "compare: "+format+"\n", args...)
}

// build compiles the application of every peer into out and returns the
// binaries by peer.
func build(dir, out string) (map[string]string, error) {
	cmd := exec.Command("go", "build", "-o", out+string(filepath.Separator), "./cmd/apps/...")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build: %w", err)
	}
	bins := map[string]string{}
	for _, p := range peerNames {
		bins[p] = filepath.Join(out, p)
		if _, err := os.Stat(bins[p]); err != nil {
			return nil, err
		}
	}
	return bins, nil
}

// idleSettle is how long an application runs idle before SIGTERM.
const idleSettle = 200 * time.Millisecond

// runIdle starts bin with args, lets it idle, sends SIGTERM and returns the
// time until it has exited.
func runIdle(bin string, args ...string) (time.Duration, error) {
	c, err := startChild(bin, args...)
	if err != nil {
		return 0, err
	}
	defer c.kill()
	time.Sleep(idleSettle)
	at, err := c.term()
	if err != nil {
		return 0, err
	}
	if !c.waitExit(hangLimit) {
		return 0, fmt.Errorf("%w within %v after SIGTERM when idle", errNotExited, hangLimit)
	}
	if code := c.exitCode(); code != "exit 0" {
		return 0, fmt.Errorf("%s after SIGTERM when idle: %s", code, c.stderr.String())
	}
	return c.exitAt.Sub(at), nil
}

// hangResult is what became of an application whose worker's stop hangs.
type hangResult struct {
	exited bool
	after  time.Duration // from SIGTERM to exit, when it exited
	code   string
}

// runHang starts bin with args, sends SIGTERM and waits up to hangLimit for
// the process to exit.
func runHang(bin string, args ...string) (hangResult, error) {
	c, err := startChild(bin, args...)
	if err != nil {
		return hangResult{}, err
	}
	defer c.kill()
	time.Sleep(idleSettle)
	at, err := c.term()
	if err != nil {
		return hangResult{}, err
	}
	r := hangResult{exited: c.waitExit(hangLimit)}
	r.code = c.exitCode()
	if r.exited {
		r.after = c.exitAt.Sub(at)
	}
	return r, nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// goVersion returns the version of the go command that built the apps.
func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

// commit names the commit of the repository in dir that was measured, with
// "+changes" when tracked files of the working tree differ from it.
func commit(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "an unknown commit"
	}
	c := "commit " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no", "--", "..").Output(); err == nil && len(st) > 0 {
		c += "+changes"
	}
	return c
}
