package hypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hangingProbe never decides: it blocks until its context ends, as a KVM
// guest that never boots does.
func hangingProbe(calls *atomic.Int32) ProbeFunc {
	return func(ctx context.Context) (string, string, error) {
		calls.Add(1)
		<-ctx.Done()
		return "", "", ctx.Err()
	}
}

func TestAcceleratorHangingProbe(t *testing.T) {
	var calls atomic.Int32
	cache := filepath.Join(t.TempDir(), "accel-probe.json")
	key := func(context.Context) (ProbeKey, error) { return ProbeKey{QEMU: "q", Kernel: "k", KVM: "kvm"}, nil }
	began := time.Now()
	a := StartAccelerator(AccelConfig{Probe: hangingProbe(&calls), Timeout: 700 * time.Millisecond, CacheFile: cache, Key: key})
	defer a.Close()
	if d := time.Since(began); d > 100*time.Millisecond {
		t.Fatalf("StartAccelerator took %s: it must not wait for the probe", d)
	}
	if s := a.Status(); s.State != AccelProbing || s.Since.IsZero() {
		t.Fatalf("status right after start = %+v, want probing", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	s, err := a.Wait(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || s.State != AccelProbing {
		t.Fatalf("Wait with a short context = %+v, %v; want probing and the context's error", s, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err = a.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != AccelReady || s.Accel != AccelTCG || !strings.Contains(s.Reason, "no answer within 700ms") {
		t.Fatalf("after the probe's timeout = %+v, want TCG with the reason", s)
	}
	if s.Took < 700*time.Millisecond || s.Took > 5*time.Second {
		t.Errorf("took %s", s.Took)
	}
	if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a probe that did not decide was cached: %v", err)
	}
	if calls.Load() != 1 {
		t.Errorf("probe ran %d times", calls.Load())
	}
}

func TestAcceleratorCloseStopsProbe(t *testing.T) {
	var calls atomic.Int32
	cache := filepath.Join(t.TempDir(), "accel-probe.json")
	key := func(context.Context) (ProbeKey, error) { return ProbeKey{QEMU: "q"}, nil }
	a := StartAccelerator(AccelConfig{Probe: hangingProbe(&calls), Timeout: time.Hour, CacheFile: cache, Key: key})
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	began := time.Now()
	a.Close()
	if d := time.Since(began); d > time.Second {
		t.Fatalf("Close took %s", d)
	}
	if s := a.Status(); s.State != AccelReady || s.Accel != AccelTCG || !strings.Contains(s.Reason, "stopped") {
		t.Fatalf("after Close = %+v", s)
	}
	if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a stopped probe was cached: %v", err)
	}
}

func TestAcceleratorCache(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "accel-probe.json")
	key := ProbeKey{QEMU: "QEMU emulator version 7.2.0", Kernel: "6.1.0-9-cloud-amd64", KVM: "device 10:232", ProbeKernel: "/boot/vmlinuz-6.1.0-9"}
	keyFn := func(context.Context) (ProbeKey, error) { return key, nil }
	var calls atomic.Int32
	decide := func(accel, reason string) ProbeFunc {
		return func(context.Context) (string, string, error) {
			calls.Add(1)
			return accel, reason, nil
		}
	}
	wait := func(a *Accelerator) AccelStatus {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := a.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a.Close()
		return s
	}

	// First start: probed, and the result is written.
	s := wait(StartAccelerator(AccelConfig{Probe: decide(AccelKVM, "KVM guest reached userspace in 1.2s"), CacheFile: cache, Key: keyFn}))
	if s.Accel != AccelKVM || s.Cached || calls.Load() != 1 {
		t.Fatalf("first start = %+v after %d probes", s, calls.Load())
	}
	fi, err := os.Stat(cache)
	if err != nil {
		t.Fatalf("result not cached: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache mode %v, want 0600", fi.Mode().Perm())
	}
	var c probeCache
	if b, _ := os.ReadFile(cache); json.Unmarshal(b, &c) != nil || c.Key != key || c.Accel != AccelKVM {
		t.Fatalf("cache file = %s", b)
	}

	// Same key: the cache answers, the probe does not run.
	s = wait(StartAccelerator(AccelConfig{Probe: decide(AccelTCG, "must not run"), CacheFile: cache, Key: keyFn}))
	if s.Accel != AccelKVM || !s.Cached || !strings.Contains(s.Reason, "KVM guest reached userspace in 1.2s") || calls.Load() != 1 {
		t.Fatalf("cache hit = %+v after %d probes", s, calls.Load())
	}

	// Each part of the key that changes makes it probe again.
	for i, change := range []func(*ProbeKey){
		func(k *ProbeKey) { k.Kernel = "6.1.0-10-cloud-amd64" },
		func(k *ProbeKey) { k.QEMU = "QEMU emulator version 8.0.0" },
		func(k *ProbeKey) { k.KVM = "absent" },
		func(k *ProbeKey) { k.ProbeKernel = "/boot/vmlinuz-6.1.0-10" },
	} {
		change(&key)
		before := calls.Load()
		s = wait(StartAccelerator(AccelConfig{Probe: decide(AccelTCG, "KVM guest did not reach userspace"), CacheFile: cache, Key: keyFn}))
		if s.Accel != AccelTCG || s.Cached || calls.Load() != before+1 {
			t.Fatalf("change %d: %+v after %d probes", i, s, calls.Load()-before)
		}
		if b, _ := os.ReadFile(cache); json.Unmarshal(b, &c) != nil || c.Key != key {
			t.Fatalf("change %d: cache not rewritten: %s", i, b)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(m) > 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

func TestFixedAccelerator(t *testing.T) {
	a := FixedAccelerator(AccelKVM, "chosen with --accel kvm")
	s, err := a.Wait(context.Background())
	if err != nil || s.State != AccelReady || s.Accel != AccelKVM {
		t.Fatalf("Wait = %+v, %v", s, err)
	}
	a.Close()
}

func TestNewestBootKernel(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vmlinuz-6.1.0-9-cloud-amd64", "vmlinuz-6.1.0-10-cloud-amd64", "vmlinuz-5.10.0-28-amd64",
		"initrd.img-6.1.0-9-cloud-amd64", "initrd.img-6.1.0-10-cloud-amd64"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k, i := NewestBootKernel(dir)
	if k != filepath.Join(dir, "vmlinuz-6.1.0-10-cloud-amd64") || i != filepath.Join(dir, "initrd.img-6.1.0-10-cloud-amd64") {
		t.Fatalf("NewestBootKernel = %s, %s", k, i)
	}
	if k, i := NewestBootKernel(t.TempDir()); k != "" || i != "" {
		t.Fatalf("empty dir: %q %q", k, i)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"6.1.0-9", "6.1.0-10", -1},
		{"6.1.0-10", "6.1.0-9", 1},
		{"6.1.0-10-cloud-amd64", "6.1.0-10-cloud-amd64", 0},
		{"5.10.0-28-amd64", "6.1.0-9-cloud-amd64", -1},
		{"6.1.0-09", "6.1.0-9", 0},
		{"6.1", "6.1.0", -1},
		{"6.1.0-10-amd64", "6.1.0-10-cloud-amd64", -1},
	} {
		if got := compareVersions(c.a, c.b); got != c.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// TestHostProbeKey reads the real key: it is stable, and it changes when
// the probe kernel does.
func TestHostProbeKey(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(kernel, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k1, err := HostProbeKey(ctx, kernel)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k1.QEMU, "QEMU emulator version") || k1.Kernel == "" || k1.KVM == "" || !strings.HasPrefix(k1.ProbeKernel, kernel) {
		t.Fatalf("key = %+v", k1)
	}
	if _, err := os.Stat("/dev/kvm"); err == nil && !strings.HasPrefix(k1.KVM, "device ") {
		t.Errorf("/dev/kvm exists but the key says %q", k1.KVM)
	}
	k2, err := HostProbeKey(ctx, kernel)
	if err != nil || k2 != k1 {
		t.Fatalf("second read = %+v, %v; want %+v", k2, err, k1)
	}
	if err := os.Chtimes(kernel, time.Now(), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if k3, _ := HostProbeKey(ctx, kernel); k3 == k1 {
		t.Fatalf("key unchanged after the probe kernel changed: %+v", k3)
	}
}
