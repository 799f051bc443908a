// Command testreport reads `go test -json` on standard input and prints what
// the run did: each package's result line, the whole output of every failed
// test, every skipped test with its reason, the slowest tests, and a closing
// line "N passed, N failed, N skipped".
//
// With -allowed FILE, a skipped test that is not on that reviewed list is a
// failure: in CI a core test that skips has not run, so the run must not be
// green. The list holds one entry a line, "PACKAGE TEST  reason", where TEST
// is a test's full name (subtests included) or a prefix ending in "*", and
// the reason is required. Blank lines and lines starting with # are ignored.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output and build-fail events
	Test       string
	Elapsed    float64
	Output     string
}

type testKey struct{ pkg, test string }

// result is what a run amounted to.
type result struct {
	passed, failed, skipped int
	failures                []testKey
	skips                   []skip
	pkgFailed               []string
	slow                    []timed
	output                  map[testKey][]string
}

type skip struct {
	testKey
	reason string
}

type timed struct {
	testKey
	elapsed time.Duration
}

// allowance is one entry of the allowed-skips list.
type allowance struct {
	pkg, test, reason string
}

func main() {
	allowedFile := flag.String("allowed", "", "file listing the skips that are allowed (PACKAGE TEST reason); any other skip fails the run")
	slowest := flag.Int("slowest", 10, "how many of the slowest tests to list")
	flag.Parse()

	var allowed []allowance
	if *allowedFile != "" {
		var err error
		if allowed, err = readAllowed(*allowedFile); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
	}
	res, err := read(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	ok := report(os.Stdout, res, allowed, *allowedFile != "", *slowest)
	if !ok {
		os.Exit(1)
	}
}

// readAllowed parses the allowed-skips list.
func readAllowed(path string) ([]allowance, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []allowance
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("%s:%d: want \"PACKAGE TEST reason\", got %q", path, i+1, line)
		}
		out = append(out, allowance{pkg: f[0], test: f[1], reason: strings.Join(f[2:], " ")})
	}
	return out, nil
}

func (a allowance) matches(k testKey) bool {
	if a.pkg != k.pkg {
		return false
	}
	if p, ok := strings.CutSuffix(a.test, "*"); ok {
		return strings.HasPrefix(k.test, p)
	}
	return a.test == k.test
}

// read consumes the event stream. Package-level output (the "ok"/"FAIL"
// lines, build errors) is copied to w as it comes, so a long run shows its
// progress; test output is kept until the test ends.
func read(r io.Reader, w io.Writer) (*result, error) {
	res := &result{output: map[testKey][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// go test prints build failures and vet output as plain text.
			fmt.Fprintln(w, string(line))
			continue
		}
		k := testKey{e.Package, e.Test}
		switch {
		case e.Action == "build-output":
			fmt.Fprint(w, e.Output)
		case e.Action == "build-fail":
			res.pkgFailed = append(res.pkgFailed, e.ImportPath)
		case e.Test == "" && e.Action == "output":
			fmt.Fprint(w, e.Output)
		case e.Test == "" && e.Action == "fail":
			res.pkgFailed = append(res.pkgFailed, e.Package)
		case e.Test == "":
			// start, pass, skip of a whole package: its line was printed.
		case e.Action == "output":
			res.output[k] = append(res.output[k], e.Output)
		case e.Action == "pass":
			res.passed++
			res.slow = append(res.slow, timed{k, seconds(e.Elapsed)})
			delete(res.output, k)
		case e.Action == "fail":
			res.failed++
			res.failures = append(res.failures, k)
			fmt.Fprintf(w, "--- FAIL: %s (%s)\n", e.Test, e.Package)
			for _, o := range res.output[k] {
				fmt.Fprint(w, "    ", o)
			}
		case e.Action == "skip":
			res.skipped++
			res.skips = append(res.skips, skip{k, skipReason(res.output[k])})
			delete(res.output, k)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if res.passed+res.failed+res.skipped == 0 && len(res.pkgFailed) == 0 {
		return nil, errors.New("no test events on standard input (was it `go test -json`?)")
	}
	return res, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// skipReason is the message the test gave to t.Skip: the output lines
// between the RUN line and the SKIP line, trimmed.
func skipReason(lines []string) string {
	var msg []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		msg = append(msg, t)
	}
	return strings.Join(msg, " ")
}

// report prints the summary and says whether the run passed.
func report(w io.Writer, res *result, allowed []allowance, strict bool, slowest int) bool {
	ok := res.failed == 0 && len(res.pkgFailed) == 0
	var unlisted []skip
	if len(res.skips) > 0 {
		fmt.Fprintln(w, "\nskipped tests:")
		for _, s := range res.skips {
			mark := ""
			if strict {
				if a, found := findAllowance(allowed, s.testKey); found {
					mark = "  (allowed: " + a.reason + ")"
				} else {
					mark = "  (NOT ALLOWED)"
					unlisted = append(unlisted, s)
				}
			}
			fmt.Fprintf(w, "  %s %s: %s%s\n", s.pkg, s.test, s.reason, mark)
		}
	}
	if len(unlisted) > 0 {
		ok = false
		fmt.Fprintf(w, "\n%d test(s) skipped that are not on the allowed list: a skipped core test has not run.\n", len(unlisted))
	}
	if slowest > 0 && len(res.slow) > 0 {
		sort.Slice(res.slow, func(i, j int) bool { return res.slow[i].elapsed > res.slow[j].elapsed })
		if len(res.slow) > slowest {
			res.slow = res.slow[:slowest]
		}
		fmt.Fprintln(w, "\nslowest tests:")
		for _, s := range res.slow {
			fmt.Fprintf(w, "  %6.1fs  %s %s\n", s.elapsed.Seconds(), s.pkg, s.test)
		}
	}
	if len(res.pkgFailed) > 0 {
		fmt.Fprintf(w, "\nfailed packages: %s\n", strings.Join(res.pkgFailed, " "))
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", res.passed, res.failed, res.skipped)
	return ok
}

func findAllowance(allowed []allowance, k testKey) (allowance, bool) {
	for _, a := range allowed {
		if a.matches(k) {
			return a, true
		}
	}
	return allowance{}, false
}
