package hypervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sharedTestGuest builds (if needed) the project's test guest with
// scripts/build-test-guest.sh and returns its output directory.
func sharedTestGuest(t *testing.T) string {
	t.Helper()
	needGuest(t) // skips when QEMU is absent
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "scripts/build-test-guest.sh")
	if _, err := os.Stat(script); err != nil {
		t.Skipf("no %s yet", script)
	}
	out, err := exec.Command(script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return filepath.Join(root, "testdata/guest/out")
}

// testTap creates a tap device for the test and removes it afterwards.
func testTap(t *testing.T) string {
	t.Helper()
	var nonce [3]byte
	rand.Read(nonce[:])
	name := "shhv" + hex.EncodeToString(nonce[:])
	if out, err := exec.Command("ip", "tuntap", "add", "dev", name, "mode", "tap").CombinedOutput(); err != nil {
		t.Skipf("cannot create a tap device: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	if out, err := exec.Command("ip", "link", "set", name, "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s up: %v: %s", name, err, out)
	}
	return name
}

// TestDiskBootWithTap boots the project's test guest the way a deployed
// VM runs: from a qcow2 overlay through SeaBIOS, with a NIC on a tap;
// then saves and resumes it with the disk attached, and powers it off.
func TestDiskBootWithTap(t *testing.T) {
	out := sharedTestGuest(t)
	g := needGuest(t)
	spec := testSpec(t, g, false)
	spec.Kernel, spec.Initrd, spec.Cmdline = "", "", ""
	spec.MemoryMiB = 256
	overlay := filepath.Join(spec.RunDir, "vda.qcow2")
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2",
		"-b", filepath.Join(out, "disk.qcow2"), "-F", "qcow2", overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, b)
	}
	spec.Disks = []string{overlay}
	spec.NICs = []NIC{{Tap: testTap(t), MAC: "52:54:00:5a:00:01"}}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	serial := spec.SerialLogPath()
	began := time.Now()
	vm, err := Start(ctx, spec, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	m := waitSerial(t, serial, 0, regexp.MustCompile(`STAGEHAND-BOOT [^\r\n]*\r?\n`), 90*time.Second)
	t.Logf("disk boot → %q after %s", strings.TrimSpace(m[0]), time.Since(began).Round(time.Millisecond))
	if !strings.Contains(m[0], "disk=vda") || !strings.Contains(m[0], "eth0") {
		t.Fatalf("guest did not see its disk and NIC: %q", m[0])
	}

	// The guest arms its power-button watcher after its services start and
	// says nothing when it is armed; a press before that is lost.
	waitSerial(t, serial, 0, regexp.MustCompile(`STAGEHAND-HTTP`), 30*time.Second)
	time.Sleep(2 * time.Second)

	state := filepath.Join(spec.RunDir, "state")
	began = time.Now()
	if err := vm.SaveState(ctx, state); err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	t.Logf("save with disk+nic: %s", time.Since(began).Round(time.Millisecond))
	from := fileSize(serial)
	spec.IncomingStateFile = state
	began = time.Now()
	vm, err = Start(ctx, spec, nil)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	t.Logf("resume with disk+nic: %s", time.Since(began).Round(time.Millisecond))
	if st, err := vm.Status(ctx); err != nil || st != StateRunning {
		t.Fatalf("status after resume = %q, %v", st, err)
	}

	began = time.Now()
	if err := vm.Shutdown(ctx, 20*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	t.Logf("shutdown: %s", time.Since(began).Round(time.Millisecond))
	b, _ := os.ReadFile(serial)
	if strings.Contains(string(b[from:]), "STAGEHAND-BOOT") {
		t.Fatal("guest rebooted instead of resuming")
	}
	if !strings.Contains(string(b[from:]), "STAGEHAND-POWEROFF") {
		t.Fatal("guest did not power off on the ACPI button")
	}
}
