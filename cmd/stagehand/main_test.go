package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"stagehand/internal/cli"
)

// syncBuffer is a bytes.Buffer safe for the daemon's log writer and the
// test reading it.
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

// TestServeAndShutdown runs the daemon with the real store and disk tool on
// a free port, drives it with the CLI, then stops it as SIGTERM would.
func TestServeAndShutdown(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	logs := &syncBuffer{}
	exited := make(chan int, 1)
	go func() {
		exited <- cli.Run(ctx, []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0"},
			deps(nil, &bytes.Buffer{}, logs, func(string) string { return "" }))
	}()

	addrRE := regexp.MustCompile(`msg="stagehand serving" addr=(\S+)`)
	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case code := <-exited:
			t.Fatalf("serve exited with %d:\n%s", code, logs)
		default:
		}
		if m := addrRE.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("daemon did not start:\n%s", logs)
	}

	run := func(args ...string) (string, string, int) {
		var out, errw bytes.Buffer
		code := cli.Run(context.Background(), append([]string{"--server", "http://" + addr}, args...),
			deps(nil, &out, &errw, func(string) string { return "" }))
		return out.String(), errw.String(), code
	}
	if out, errOut, code := run("network", "create", "lan", "--subnet", "10.77.0.0/24", "--pool", "10.77.0.10-10.77.0.20", "-o", "json"); code != 0 || !strings.Contains(out, `"subnet": "10.77.0.0/24"`) {
		t.Fatalf("network create: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code := run("config", "show", "nope"); code != cli.ExitNotFound || errOut != "stagehand: configuration \"nope\" not found\n" {
		t.Fatalf("config show nope: exit %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "stagehand.db")); err != nil {
		t.Errorf("store file: %v", err)
	}

	stop()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("serve exit %d after shutdown:\n%s", code, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "msg=stopped") {
		t.Errorf("no stop log:\n%s", logs)
	}
	// The daemon is gone: the CLI says so.
	if _, _, code := run("config", "list"); code != cli.ExitUnavailable {
		t.Errorf("after shutdown: exit %d, want %d", code, cli.ExitUnavailable)
	}
}

func TestServeRefusesABusyAddress(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	first := &syncBuffer{}
	ctx, stop := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() {
		exited <- cli.Run(ctx, []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"},
			deps(nil, &bytes.Buffer{}, first, func(string) string { return "" }))
	}()
	t.Cleanup(func() { stop(); <-exited })
	addrRE := regexp.MustCompile(`msg="stagehand serving" addr=(\S+)`)
	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addrRE.FindStringSubmatch(first.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("first daemon did not start:\n%s", first)
	}
	var errw syncBuffer
	code := cli.Run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--listen", addr},
		deps(nil, &bytes.Buffer{}, &errw, func(string) string { return "" }))
	if code == 0 || !strings.Contains(errw.String(), "stagehand: listen on "+addr) {
		t.Fatalf("second daemon: exit %d\n%s", code, errw.String())
	}
}
