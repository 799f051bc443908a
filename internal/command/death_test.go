package command

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// In the parent helper the main goroutine keeps the main thread, which Go
// never ends; so the child is started from a thread that can end, the case
// Pdeathsig gets wrong unless the runner holds its thread.
func init() {
	if os.Getenv("STAGEHAND_HELPER") == "parent" {
		runtime.LockOSThread()
	}
}

// The helper process plays two roles, chosen by STAGEHAND_HELPER:
//
//	parent: runs a child through RunLines, as the daemon runs qemu-img
//	        convert, and meanwhile ends many OS threads of its own (as
//	        goroutines that lock a thread and return do), then writes the
//	        "churned" file;
//	child:  writes its pid to a file and sleeps.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("STAGEHAND_HELPER_DIR")
	switch os.Getenv("STAGEHAND_HELPER") {
	case "child":
		if err := os.WriteFile(filepath.Join(dir, "child.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
			os.Exit(3)
		}
		time.Sleep(time.Minute)
		os.Exit(0)
	case "parent":
		churned := make(chan struct{})
		go func() { churnThreads(dir); close(churned) }()
		os.Setenv("STAGEHAND_HELPER", "child")
		err := Runner{}.RunLines(context.Background(), func(string) {}, os.Args[0], "-test.run=^TestHelperProcess$")
		fmt.Fprintln(os.Stderr, "child ended:", err)
		<-churned // the test looks at the child once the churn is over
		os.Exit(0)
	}
}

// churnThreads waits for the child to run, then makes 200 goroutines lock
// their OS thread and return, which ends those threads.
func churnThreads(dir string) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "child.pid")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 20 {
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				time.Sleep(time.Millisecond) // park, so the scheduler moves others about
			}()
		}
		wg.Wait()
	}
	os.WriteFile(filepath.Join(dir, "churned"), nil, 0o600)
}

// alive reports whether pid runs (a zombie no one reaped is dead).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// waitFile waits until path exists and, when nonEmpty, holds something.
func waitFile(t *testing.T, path string, nonEmpty bool) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && (len(b) > 0 || !nonEmpty) {
			return b
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
	return nil
}

// TestChildDiesWithParent SIGKILLs a process while a child it started
// through this package runs: the child must die too, and must not die
// earlier, when threads of the parent end.
func TestChildDiesWithParent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts helper processes")
	}
	dir := t.TempDir()
	parent := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	parent.Env = append(os.Environ(), "STAGEHAND_HELPER=parent", "STAGEHAND_HELPER_DIR="+dir)
	var out strings.Builder
	parent.Stdout, parent.Stderr = &out, &out
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	child := 0
	t.Cleanup(func() {
		parent.Process.Kill()
		parent.Wait()
		if child != 0 && alive(child) {
			syscall.Kill(child, syscall.SIGKILL)
		}
	})
	child, _ = strconv.Atoi(string(waitFile(t, filepath.Join(dir, "child.pid"), true)))
	waitFile(t, filepath.Join(dir, "churned"), false)
	if !alive(child) {
		t.Fatalf("child %d died while its parent still ran (a thread of the parent ended); parent said: %s", child, out.String())
	}

	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d still runs 5 s after its parent was SIGKILLed", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
