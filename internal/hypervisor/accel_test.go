package hypervisor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestProbeAccelWithoutKVM(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err == nil {
		t.Skip("/dev/kvm exists here; the absent case cannot be shown")
	}
	accel, reason := ProbeAccel(context.Background(), "/nonexistent", "", time.Second, nil)
	if accel != AccelTCG || reason != "/dev/kvm absent" {
		t.Fatalf("ProbeAccel = %q, %q", accel, reason)
	}
}

// TestProbeAccelOnHost runs the real probe, whatever this machine has.
func TestProbeAccelOnHost(t *testing.T) {
	g := needGuest(t)
	began := time.Now()
	accel, reason := ProbeAccel(context.Background(), g.kernel, g.initrd, 30*time.Second, nil)
	t.Logf("ProbeAccel = %s (%s) in %s", accel, reason, time.Since(began).Round(time.Millisecond))
	if accel != AccelKVM && accel != AccelTCG || reason == "" {
		t.Fatalf("ProbeAccel = %q, %q", accel, reason)
	}
	assertNoProbeLeft(t)
}

// The boot test itself, run under TCG so it works on any machine: a guest
// that reaches its marker passes, one that never does fails at the timeout,
// and neither leaves a QEMU behind.
func TestBootProbe(t *testing.T) {
	g := needGuest(t)
	ctx := context.Background()
	took, err := bootProbe(ctx, AccelTCG, g.kernel, g.initrd, 60*time.Second, nil, nil)
	if err != nil {
		t.Fatalf("bootProbe: %v", err)
	}
	t.Logf("TCG guest reached userspace in %s", took.Round(time.Millisecond))
	assertNoProbeLeft(t)

	began := time.Now()
	_, err = bootProbe(ctx, AccelTCG, g.kernel, g.initrd, 2*time.Second, []string{"NEVER-PRINTED"}, nil)
	if err == nil || !strings.Contains(err.Error(), "NEVER-PRINTED") {
		t.Fatalf("bootProbe without its marker = %v", err)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Fatalf("timed-out probe took %s", d)
	}
	t.Logf("timeout error: %v", err)
	assertNoProbeLeft(t)
}

func assertNoProbeLeft(t *testing.T) {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(b), "stagehand-accel-probe-"+strconv.Itoa(os.Getpid())+"-") {
			continue
		}
		if state, _, ok := procStat(mustAtoi(e.Name())); ok && state != 'Z' {
			t.Fatalf("probe qemu left running: pid %s", e.Name())
		}
	}
	if m, _ := filepath.Glob(filepath.Join(os.TempDir(), "stagehand-probe-"+strconv.Itoa(os.Getpid())+"-*")); len(m) > 0 {
		t.Fatalf("probe run directories left: %v", m)
	}
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
