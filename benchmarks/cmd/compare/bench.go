package main

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// benchResults holds the in-process results by benchmark (such as
// "StartStop/n=10"), peer and unit, one value per -count.
type benchResults map[string]map[string]map[string][]float64

// benchLine matches a result line of go test -bench, such as
// "BenchmarkStartStop/n=10/peer=fx-2  1592  224477 ns/op  90.33 allocs/component".
var benchLine = regexp.MustCompile(`^Benchmark(\S+?)/peer=(\w+)(?:-\d+)?\s+\d+\s+(.*)$`)

// readBench parses the output of go test -bench.
func readBench(name string) (benchResults, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseBench(bufio.NewScanner(f))
}

func parseBench(s *bufio.Scanner) (benchResults, error) {
	res := benchResults{}
	for s.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(s.Text()))
		if m == nil {
			continue
		}
		bench, peer, fields := m[1], m[2], strings.Fields(m[3])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			unit := fields[i+1]
			if res[bench] == nil {
				res[bench] = map[string]map[string][]float64{}
			}
			if res[bench][peer] == nil {
				res[bench][peer] = map[string][]float64{}
			}
			res[bench][peer][unit] = append(res[bench][peer][unit], v)
		}
	}
	return res, s.Err()
}

// get returns the median of the values of bench, peer and unit, and whether
// there were any.
func (b benchResults) get(bench, peer, unit string) (float64, bool) {
	vs := b[bench][peer][unit]
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}
