package hypervisor

import (
	"errors"
	"io/fs"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestProcessCPUTime reads the CPU time of a child that spins for a while:
// it grows with the work the child did, agrees with what the kernel
// reports to the parent when the child is reaped (rusage), and a process
// that is gone is a not-exist error.
func TestProcessCPUTime(t *testing.T) {
	// A shell loop burning CPU in the shell itself (no child processes),
	// then waiting for its stdin to close before it exits.
	cmd := exec.Command("sh", "-c", `i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; read x; exit 0`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	first, err := ProcessCPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	var last time.Duration
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if last, err = ProcessCPUTime(pid); err != nil {
			t.Fatal(err)
		}
		if last >= first+200*time.Millisecond {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last < first+200*time.Millisecond {
		t.Fatalf("cpu time went from %v to %v while the child spun", first, last)
	}
	// Let the loop end (the child then blocks in read), and read the
	// total just before the child exits.
	var final time.Duration
	for {
		d, err := ProcessCPUTime(pid)
		if err != nil {
			t.Fatal(err)
		}
		if d == final && d > 0 {
			break
		}
		final = d
		time.Sleep(200 * time.Millisecond)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	kernel := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	// Both tick at 10 ms; the exit itself costs a tick or two.
	if diff := kernel - final; diff < 0 || diff > 30*time.Millisecond {
		t.Errorf("read %v, the kernel's rusage says %v", final, kernel)
	}
	if _, err := ProcessCPUTime(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("gone process: %v, want not exist", err)
	}
}
