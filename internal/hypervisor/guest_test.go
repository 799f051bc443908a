package hypervisor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The integration tests boot a throwaway guest: the host's Debian kernel
// and an initramfs holding busybox-static and an init that prints a
// counter every 200 ms, so a resumed guest can be told from a rebooted one.

// testInit is the guest's /init. With stagehand_acpi=on on the kernel
// command line it powers off when the ACPI power button is pressed.
const testInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
echo "STAGEHAND-INIT up $(cut -d' ' -f1 /proc/uptime)"
if [ "$stagehand_acpi" = on ]; then
	insmod /lib/modules/evdev.ko
	insmod /lib/modules/button.ko
	# A watcher on each input device powers off at its first event (no
	# one else makes input events here). Devices are armed as their nodes
	# appear, for 30 s: devtmpfs makes nodes asynchronously, and a loaded
	# machine probes the keyboard late. Each is named as it is armed.
	(
	armed=" "
	k=0
	while [ $k -lt 150 ]; do
		for s in /sys/class/input/event*; do
			e=/dev/input/${s##*/}
			[ -c "$e" ] || continue
			case "$armed" in *" $e "*) continue ;; esac
			armed="$armed$e "
			(dd if="$e" of=/dev/null bs=4096 count=1 2>/dev/null && echo STAGEHAND-ACPI-POWEROFF && poweroff -f) &
			echo "STAGEHAND-ACPI armed $e: $(cat $s/device/name)"
		done
		k=$((k+1))
		sleep 0.2
	done
	) &
fi
i=0
while true; do
	echo "STAGEHAND-TICK $i $(cut -d' ' -f1 /proc/uptime)"
	i=$((i+1))
	sleep 0.2
done
`

type testGuest struct {
	kernel, initrd string
}

var (
	guestOnce sync.Once
	guest     testGuest
	guestSkip string
	guestErr  error
)

// needGuest returns the test guest, building it on first use, or skips
// the test when QEMU (or what the guest is made of) is truly absent.
func needGuest(t *testing.T) testGuest {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no guests in the fast tier")
	}
	guestOnce.Do(func() { guest, guestSkip, guestErr = buildTestGuest() })
	if guestSkip != "" {
		t.Skip(guestSkip)
	}
	if guestErr != nil {
		t.Fatalf("build test guest: %v", guestErr)
	}
	return guest
}

func buildTestGuest() (testGuest, string, error) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return testGuest{}, "qemu-system-x86_64 not installed", nil
	}
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(kernels) == 0 {
		return testGuest{}, "no /boot/vmlinuz-* (apt-get install linux-image-cloud-amd64)", nil
	}
	kernel := kernels[len(kernels)-1]
	busybox, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		busybox, err = os.ReadFile("/bin/busybox")
	}
	if err != nil {
		return testGuest{}, "no busybox (apt-get install busybox-static)", nil
	}
	if !bytes.HasPrefix(busybox, []byte("\x7fELF")) || isDynamic("/usr/bin/busybox") {
		return testGuest{}, "busybox is not static (apt-get install busybox-static)", nil
	}
	version := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	modDir := filepath.Join("/lib/modules", version, "kernel/drivers")
	button, err1 := os.ReadFile(filepath.Join(modDir, "acpi/button.ko"))
	evdev, err2 := os.ReadFile(filepath.Join(modDir, "input/evdev.ko"))

	dir, err := os.MkdirTemp("", "sh-guest-")
	if err != nil {
		return testGuest{}, "", err
	}
	var cpio cpioWriter
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"} {
		cpio.dir(d)
	}
	cpio.charDev("dev/console", 5, 1)
	cpio.file("bin/busybox", 0o755, busybox)
	cpio.file("init", 0o755, []byte(testInit))
	if err1 == nil && err2 == nil {
		cpio.file("lib/modules/button.ko", 0o644, button)
		cpio.file("lib/modules/evdev.ko", 0o644, evdev)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(initrd, cpio.finish(), 0o644); err != nil {
		return testGuest{}, "", err
	}
	return testGuest{kernel: kernel, initrd: initrd}, "", nil
}

func isDynamic(path string) bool {
	out, err := exec.Command("file", "-L", path).Output()
	return err == nil && bytes.Contains(out, []byte("dynamically linked"))
}

// cpioWriter writes the "newc" format the kernel unpacks as initramfs.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (w *cpioWriter) entry(name string, mode uint32, data []byte, rmaj, rmin int) {
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string) { w.entry(name, syscall.S_IFDIR|0o755, nil, 0, 0) }
func (w *cpioWriter) file(name string, perm uint32, data []byte) {
	w.entry(name, syscall.S_IFREG|perm, data, 0, 0)
}
func (w *cpioWriter) charDev(name string, maj, min int) {
	w.entry(name, syscall.S_IFCHR|0o600, nil, maj, min)
}
func (w *cpioWriter) finish() []byte {
	w.entry("TRAILER!!!", 0, nil, 0, 0)
	return w.buf.Bytes()
}

// testSpec returns a spec for the test guest with a unique ID and a short
// run directory, and makes sure no QEMU of it survives the test.
func testSpec(t *testing.T, g testGuest, acpi bool) Spec {
	t.Helper()
	dir, err := os.MkdirTemp("", "sh-hv-")
	if err != nil {
		t.Fatal(err)
	}
	var nonce [4]byte
	rand.Read(nonce[:])
	id := "test/" + hex.EncodeToString(nonce[:])
	acpiArg := "off"
	if acpi {
		acpiArg = "on"
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if p, err := qemuProcessFor(filepath.Join(dir, pidfileName), id); err == nil {
			t.Logf("cleanup: killing leftover qemu pid %d", p.pid)
			p.kill(ctx)
		}
		for _, p := range qemuProcessesByID(id) {
			t.Logf("cleanup: killing leftover qemu pid %d", p.pid)
			p.kill(ctx)
		}
		if t.Failed() {
			for _, name := range []string{serialLogName, qemuLogName} {
				if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
					t.Logf("%s (last 1500 bytes):\n%s", name, tail(b, 1500))
				}
			}
		}
		os.RemoveAll(dir)
	})
	return Spec{
		ID:        id,
		CPUs:      1,
		MemoryMiB: 128,
		Accel:     AccelTCG,
		Kernel:    g.kernel,
		Initrd:    g.initrd,
		Cmdline:   "console=ttyS0 panic=-1 stagehand_acpi=" + acpiArg,
		RunDir:    dir,
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// waitSerial waits until the serial log, from byte offset from on, matches
// re, and returns the first match's submatches.
func waitSerial(t *testing.T, path string, from int64, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if int64(len(b)) > from {
			if m := re.FindStringSubmatch(string(b[from:])); m != nil {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %s within %s; last bytes:\n%s", re, path, timeout, tail(b, 600))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

var tickRe = regexp.MustCompile(`STAGEHAND-TICK (\d+) ([\d.]+)\r?\n`)

// lastTick returns the last counter value and guest uptime in the log.
func lastTick(t *testing.T, path string) (int, float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	all := tickRe.FindAllStringSubmatch(string(b), -1)
	if len(all) == 0 {
		t.Fatalf("no tick in %s", path)
	}
	last := all[len(all)-1]
	n, _ := strconv.Atoi(last[1])
	up, _ := strconv.ParseFloat(last[2], 64)
	return n, up
}

func TestMain(m *testing.M) {
	code := m.Run()
	if guest.initrd != "" {
		os.RemoveAll(filepath.Dir(guest.initrd))
	}
	os.Exit(code)
}
