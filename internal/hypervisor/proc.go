package hypervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process identifies one running process for as long as it lives: a PID
// alone may be reused by the kernel after the process is gone, the pair
// (PID, start time) is not.
type process struct {
	pid       int
	startTime uint64 // field 22 of /proc/PID/stat, in clock ticks since boot
}

// procStat reads the state letter and start time of pid. ok is false when
// the process does not exist.
func procStat(pid int) (state byte, startTime uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// comm (field 2) is in parentheses and may itself hold spaces or
	// parentheses: the fields we want follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0, 0, false
	}
	st, err := strconv.ParseUint(fields[19], 10, 64) // field 22
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], st, true
}

// alive reports whether the process still runs. A zombie counts as gone:
// a daemonized QEMU is re-parented to PID 1, which may never reap it.
func (p process) alive() bool {
	state, st, ok := procStat(p.pid)
	if !ok || st != p.startTime {
		return false
	}
	return state != 'Z' && state != 'X'
}

// signal sends sig only if the process is still the one we know.
func (p process) signal(sig syscall.Signal) error {
	if !p.alive() {
		return nil
	}
	if err := syscall.Kill(p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.pid, err)
	}
	return nil
}

// wait polls until the process is gone or ctx ends. A daemonized QEMU is
// not our child, so waitpid cannot be used.
func (p process) wait(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for p.alive() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for pid %d to exit: %w", p.pid, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// kill sends SIGKILL and waits for the process to disappear.
func (p process) kill(ctx context.Context) error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.wait(ctx)
}

// qemuProcessFor returns the process whose PID is in pidfile, but only if
// /proc/PID/cmdline shows a qemu-system binary started with "-name id":
// a PID from a stale file may belong to anything by now.
func qemuProcessFor(pidfile, id string) (process, error) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return process{}, fmt.Errorf("no pidfile %s: %w", pidfile, ErrNotRunning)
		}
		return process{}, fmt.Errorf("read pidfile: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return process{}, fmt.Errorf("pidfile %s holds %q, not a PID: %w", pidfile, b, ErrNotRunning)
	}
	state, st, ok := procStat(pid)
	if !ok || state == 'Z' || state == 'X' {
		return process{}, fmt.Errorf("pid %d from %s has exited: %w", pid, pidfile, ErrNotRunning)
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return process{}, fmt.Errorf("pid %d from %s has exited: %w", pid, pidfile, ErrNotRunning)
	}
	if !isQEMUFor(cmdline, id) {
		return process{}, fmt.Errorf("pid %d from %s is not the QEMU of %q (pid reused): %w", pid, pidfile, id, ErrNotRunning)
	}
	return process{pid: pid, startTime: st}, nil
}

// isQEMUFor checks a NUL-separated /proc/PID/cmdline for a qemu-system
// binary and the exact argument pair "-name", id.
func isQEMUFor(cmdline []byte, id string) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) == 0 || !strings.Contains(args[0], "qemu-system") {
		return false
	}
	for i := 1; i+1 < len(args); i++ {
		if args[i] == "-name" && args[i+1] == id {
			return true
		}
	}
	return false
}

// qemuProcessesByID scans /proc for QEMU processes started with "-name id".
// It is the fallback when no pidfile says which process to clean up, such
// as a start interrupted before QEMU wrote one.
func qemuProcessesByID(id string) []process {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !isQEMUFor(cmdline, id) {
			continue
		}
		if state, st, ok := procStat(pid); ok && state != 'Z' && state != 'X' {
			found = append(found, process{pid: pid, startTime: st})
		}
	}
	return found
}
