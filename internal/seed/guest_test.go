package seed

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The integration test boots the project's test guest (testdata/guest) under
// QEMU with a seed disk and asks it over HTTP what identity it found. QEMU's
// user-mode network with restrict=on: nothing leaves QEMU, the only host
// socket is the hostfwd on 127.0.0.1.

// guestOut builds the test guest if needed and returns its output directory.
func guestOut(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no guests in the fast tier")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "scripts/build-test-guest.sh")
	if out, err := exec.Command(script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return filepath.Join(root, "testdata/guest/out")
}

// bootedGuest is one running test guest.
type bootedGuest struct {
	port   int
	serial string
}

// bootWithSeed boots the guest by direct kernel boot with disk on virtio-blk
// and the seed as a second, read-only virtio-blk disk, waits for its first
// address, and kills QEMU when the test ends.
func bootWithSeed(t *testing.T, out, disk, seedPath, mac, appendArgs string) bootedGuest {
	t.Helper()
	cmdline, err := os.ReadFile(filepath.Join(out, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	serial := filepath.Join(dir, "serial.log")
	// A port free now may be taken before QEMU binds it: QEMU then exits
	// at once, and another port is tried.
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		var stderr bytes.Buffer
		cmd := exec.Command("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256",
			"-nodefaults", "-no-reboot", "-display", "none", "-serial", "file:"+serial,
			"-kernel", filepath.Join(out, "vmlinuz"), "-initrd", filepath.Join(out, "initrd.img"),
			"-append", strings.TrimSpace(string(cmdline)+" "+appendArgs),
			"-drive", "file="+disk+",if=virtio,format=qcow2",
			"-drive", "file="+seedPath+",if=virtio,format=raw,readonly=on",
			"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:80", port),
			"-device", "virtio-net-pci,netdev=n0,romfile=,mac="+mac)
		cmd.Stderr = &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		g := bootedGuest{port: port, serial: serial}
		err := g.waitConsole(exited, "STAGEHAND-IP eth0", 120*time.Second)
		if err == nil {
			return g
		}
		if strings.Contains(stderr.String(), "forwarding") && attempt < 5 {
			continue
		}
		console, _ := os.ReadFile(serial)
		t.Fatalf("guest: %v\nqemu stderr: %s\nserial console:\n%s", err, stderr.String(), console)
	}
}

// waitConsole waits for line on the serial console. Connecting through the
// hostfwd before the guest has an address would stall in slirp for a second
// (see testdata/guest/README.md), hence the wait for STAGEHAND-IP.
func (g bootedGuest) waitConsole(exited <-chan error, line string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(g.serial); bytes.Contains(b, []byte(line)) {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("QEMU exited (%v) before %q", err, line)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("no %q on the console within %s", line, limit)
}

// get returns the key=value lines the guest answers at path.
func (g bootedGuest) get(t *testing.T, path string) map[string]string {
	t.Helper()
	client := http.Client{Timeout: 15 * time.Second}
	var lastErr error
	for range 20 {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", g.port, path))
		if err != nil {
			lastErr = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v\n%s", path, resp.StatusCode, err, body)
		}
		fields := map[string]string{}
		for _, line := range strings.Split(string(body), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				if _, dup := fields[k]; !dup {
					fields[k] = v
				}
			}
		}
		return fields
	}
	console, _ := os.ReadFile(g.serial)
	t.Fatalf("GET %s: %v\nserial console:\n%s", path, lastErr, console)
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestGuestReadsSeed boots a VM and then a clone of it (a new overlay on the
// same base, a new seed with a new instance-id and hostname) and checks that
// each guest reports its own seed's instance-id, that the seed's hostname
// wins over the one in the disk's marker block, and that stagehand.hostname=
// on the kernel command line wins over the seed's (the clone's boot).
func TestGuestReadsSeed(t *testing.T) {
	out := guestOut(t)
	root := filepath.Dir(filepath.Dir(filepath.Dir(out))) // out is ROOT/testdata/guest/out
	dir := t.TempDir()
	base := filepath.Join(out, "data.qcow2")
	marker := filepath.Join(root, "scripts/guest-marker.sh")

	vms := []struct {
		name, hostname, mac string
		instanceID          string
		cmdlineHostname     string // stagehand.hostname=, when not empty
	}{
		{"source", "web-1", "52:54:00:5e:ed:01", NewInstanceID(), ""},
		{"clone", "web-1-clone", "52:54:00:5e:ed:02", NewInstanceID(), "from-cmdline"},
	}
	if vms[0].instanceID == vms[1].instanceID {
		t.Fatalf("two NewInstanceID calls gave %s", vms[0].instanceID)
	}
	for _, vm := range vms {
		// A subtest each, so the source's QEMU is gone before the clone boots.
		t.Run(vm.name, func(t *testing.T) {
			disk := filepath.Join(dir, vm.name+".qcow2")
			qemuImg(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", disk)
			// The marker names another host: the seed must win over it.
			if b, err := exec.Command(marker, "write", disk, "seeded", "from-marker").CombinedOutput(); err != nil {
				t.Fatalf("guest-marker.sh write: %v\n%s", err, b)
			}
			seedPath := filepath.Join(dir, vm.name+"-seed.iso")
			err := Build(context.Background(), seedPath, Spec{
				InstanceID: vm.instanceID,
				Hostname:   vm.hostname,
				NICs:       []NIC{{MAC: vm.mac, Mode: ModeDHCP}},
			})
			if err != nil {
				t.Fatal(err)
			}

			began := time.Now()
			appendArgs, wantHostname := "", vm.hostname
			if vm.cmdlineHostname != "" {
				appendArgs, wantHostname = "stagehand.hostname="+vm.cmdlineHostname, vm.cmdlineHostname
			}
			g := bootWithSeed(t, out, disk, seedPath, vm.mac, appendArgs)
			id := g.get(t, "/identity")
			t.Logf("%s: /identity %v after %s", vm.name, id, time.Since(began).Round(time.Millisecond))
			want := map[string]string{"hostname": wantHostname, "instance-id": vm.instanceID, "seed": "vdb"}
			for k, v := range want {
				if id[k] != v {
					t.Errorf("%s: /identity %s = %q, want %q", vm.name, k, id[k], v)
				}
			}
			status := g.get(t, "/")
			if status["instance-id"] != vm.instanceID || status["hostname"] != wantHostname {
				t.Errorf("%s: GET / hostname=%q instance-id=%q, want %q %q",
					vm.name, status["hostname"], status["instance-id"], wantHostname, vm.instanceID)
			}
			// The marker disk is still vda, untouched by the seed beside it.
			if status["disk"] != "vda" || status["marker"] != "seeded" {
				t.Errorf("%s: GET / disk=%q marker=%q, want vda and seeded", vm.name, status["disk"], status["marker"])
			}
			console, _ := os.ReadFile(g.serial)
			if line := "STAGEHAND-SEED dev=vdb instance-id=" + vm.instanceID + " hostname=" + vm.hostname; !bytes.Contains(console, []byte(line)) {
				t.Errorf("%s: no %q on the console:\n%s", vm.name, line, console)
			}
		})
	}
}
