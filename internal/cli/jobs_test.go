package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"stagehand/internal/cli"
)

// syncBuffer is a bytes.Buffer a test reads while the CLI writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is a CLI run in the background, with ctx standing for the
// process's signals (cancel is a Ctrl-C).
type running struct {
	stdout, stderr syncBuffer
	code           chan int
	interrupt      context.CancelFunc
}

func (e *env) start(args ...string) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{code: make(chan int, 1), interrupt: cancel}
	e.t.Cleanup(cancel)
	go func() {
		r.code <- cli.Run(ctx, args, cli.Deps{
			Stdout: &r.stdout, Stderr: &r.stderr,
			Getenv: func(k string) string {
				if k == "STAGEHAND_SERVER" {
					return e.url
				}
				return ""
			},
		})
	}()
	return r
}

// waitStderr waits until stderr holds n lines starting with prefix.
func (r *running) waitStderr(t *testing.T, prefix string, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if len(linesWith(r.stderr.String(), prefix)) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stderr has not %d lines starting with %q after 20s:\n%s", n, prefix, r.stderr.String())
		}
	}
}

func (r *running) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.code:
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("the command has not ended after 30s; stderr:\n%s", r.stderr.String())
		return 0
	}
}

func linesWith(s, prefix string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// TestFullCloneProgressNotOnATerminal: config clone --mode full with
// stderr not a terminal writes plain progress lines while the job runs
// (the job's state as the daemon reports it, one line per lineEvery while
// nothing moves), never a carriage return, then a last line saying it is
// done, and the new configuration on stdout.
func TestFullCloneProgressNotOnATerminal(t *testing.T) {
	defer cli.SetProgressTiming(0, 100*time.Millisecond)()
	e := newEnv(t)
	e.lab.Disks.Hold()
	r := e.start("config", "clone", "web", "copy", "--mode", "full")
	r.waitStderr(t, "full-clone copy: ", 3)
	e.lab.Disks.Release()
	if code := r.exit(t); code != 0 {
		t.Fatalf("exit %d: %s", code, r.stderr.String())
	}
	stderr := r.stderr.String()
	if strings.ContainsAny(stderr, "\r\x1b") {
		t.Errorf("control characters in progress that is not on a terminal: %q", stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	// Held before the disk copy starts: nothing done of the 1 GiB disk
	// (of an unknown total in the job's first snapshot), nothing moving.
	held := regexp.MustCompile(`^full-clone copy: (0 B|0% \(0 B of 1 GiB\)(, 0 B/s)?)$`)
	for _, l := range lines[:len(lines)-1] {
		if !held.MatchString(l) {
			t.Errorf("progress line %q, want the held job's state", l)
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "full-clone copy: done, ") {
		t.Errorf("last line %q, want the job done", last)
	}
	if out := r.stdout.String(); !strings.Contains(out, "Name:") || !strings.Contains(out, "copy") {
		t.Errorf("stdout lacks the new configuration:\n%s", out)
	}
}

// TestFullCloneInterruptCancelsTheJob: Ctrl-C while config clone --mode
// full waits asks the daemon to cancel the job, waits for it to end
// (canceled, rolled back: no configuration "copy") and exits 6.
func TestFullCloneInterruptCancelsTheJob(t *testing.T) {
	defer cli.SetProgressTiming(0, time.Minute)()
	e := newEnv(t)
	e.lab.Disks.Hold()
	r := e.start("config", "clone", "web", "copy", "--mode", "full")
	r.waitStderr(t, "full-clone copy: ", 1)
	r.interrupt()
	if code := r.exit(t); code != cli.ExitCanceled {
		t.Fatalf("exit %d, want %d: %s", code, cli.ExitCanceled, r.stderr.String())
	}
	stderr := r.stderr.String()
	for _, want := range []string{"canceling job 1 (full-clone copy)", "full-clone copy: canceled at 0", "job 1 (full-clone copy) was canceled"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if out, _, _ := e.run("job", "show", "1"); !strings.Contains(out, "canceled") {
		t.Errorf("the job on the daemon:\n%s", out)
	}
	if _, _, code := e.run("config", "show", "copy"); code != cli.ExitNotFound {
		t.Errorf("config show copy after the cancel: exit %d, want %d", code, cli.ExitNotFound)
	}
}

// TestJobWaitInterruptLeavesTheJob: job wait follows a job it did not
// start: Ctrl-C stops the wait (exit 6, saying how to go on) and the job
// keeps running.
func TestJobWaitInterruptLeavesTheJob(t *testing.T) {
	defer cli.SetProgressTiming(0, time.Minute)()
	e := newEnv(t)
	e.lab.Disks.Hold()
	if _, stderr, code := e.run("config", "clone", "web", "copy", "--mode", "full", "--detach"); code != 0 {
		t.Fatalf("clone --detach: exit %d: %s", code, stderr)
	}
	r := e.start("job", "wait", "1")
	r.waitStderr(t, "full-clone copy: ", 1)
	r.interrupt()
	if code := r.exit(t); code != cli.ExitCanceled || !strings.Contains(r.stderr.String(), "job 1 goes on") {
		t.Fatalf("exit %d, want %d saying the job goes on: %s", code, cli.ExitCanceled, r.stderr.String())
	}
	if out, _, _ := e.run("job", "show", "1"); !strings.Contains(out, "running") {
		t.Errorf("the job after job wait was interrupted:\n%s", out)
	}
}

// TestTransfersShowBytes: template import reports the bytes sent, at each
// tenth of the file, up to all of it; archive export the bytes received
// (out of the archive's size) up to the bundle's size; archive import the
// bundle's upload, then the import job; -o json shows none of it.
func TestTransfersShowBytes(t *testing.T) {
	defer cli.SetProgressTiming(0, time.Minute)()
	e := newEnv(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := e.run("template", "import", "up", "--disk", disk, "--format", "raw")
	if code != 0 {
		t.Fatalf("template import: exit %d: %s", code, stderr)
	}
	lines := linesWith(stderr, "upload template up: ")
	var tenths []string
	for _, l := range lines {
		pct, _, _ := strings.Cut(strings.TrimPrefix(l, "upload template up: "), " ")
		tenths = append(tenths, pct)
	}
	if got, want := strings.Join(tenths, " "), "0% 10% 20% 30% 40% 50% 60% 70% 80% 90% 100% done,"; got != want {
		t.Errorf("upload lines at %q, want %q:\n%s", got, want, stderr)
	}
	if !strings.Contains(stderr, "upload template up: 50% (2 MiB of 4 MiB)") || !strings.HasPrefix(lines[len(lines)-1], "upload template up: done, 4 MiB in ") {
		t.Errorf("upload progress:\n%s", stderr)
	}
	if strings.ContainsAny(stderr, "\r\x1b") {
		t.Errorf("control characters: %q", stderr)
	}

	if _, stderr, code := e.run("archive", "create", "web", "arch"); code != 0 || len(linesWith(stderr, "archive arch: done, ")) != 1 {
		t.Fatalf("archive create: exit %d: %s", code, stderr)
	}
	bundle := filepath.Join(dir, "arch.tar")
	_, stderr, code = e.run("archive", "export", "arch", bundle)
	fi, err := os.Stat(bundle)
	if code != 0 || err != nil {
		t.Fatalf("archive export: exit %d: %s (%v)", code, stderr, err)
	}
	if !strings.HasPrefix(stderr, "export arch: 0% (0 B of ") || len(linesWith(stderr, "export arch: done, "+cli.Size(fi.Size())+" in ")) != 1 {
		t.Errorf("export progress, for a bundle of %d bytes:\n%s", fi.Size(), stderr)
	}
	_, stderr, code = e.run("archive", "import", bundle, "--name", "copy")
	if code != 0 {
		t.Fatalf("archive import: exit %d: %s", code, stderr)
	}
	up := "upload " + bundle + ": "
	if !strings.HasPrefix(stderr, up+"0% (0 B of ") || len(linesWith(stderr, up+"done, "+cli.Size(fi.Size())+" in ")) != 1 ||
		len(linesWith(stderr, "import copy: done, ")) != 1 {
		t.Errorf("import progress:\n%s", stderr)
	}

	if _, stderr, code := e.run("template", "import", "quiet", "--disk", disk, "--format", "raw", "-o", "json"); code != 0 || stderr != "" {
		t.Errorf("template import -o json: exit %d, stderr %q, want no progress", code, stderr)
	}
}
