package hypervisor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultProbeMarkers are serial console lines that show a guest reached
// userspace: the kernel's last word before it executes the initramfs init,
// and the prefix of the test guest's own messages.
var DefaultProbeMarkers = []string{"Run /init as init process", "STAGEHAND-"}

// probeCmdline keeps the kernel talkative on the serial port (no "quiet")
// so the markers appear, and makes a panic end the boot at once.
const probeCmdline = "console=ttyS0 panic=-1 loglevel=7"

// ProbeAccel decides between KVM and TCG. /dev/kvm can exist where KVM
// cannot run a stock guest (nested, paravirtual, no vmx/svm), so KVM is
// picked only if kernel+initrd really boot under it to one of markers
// (DefaultProbeMarkers when none are given) on the serial console within
// timeout. It returns the accelerator and why it was chosen. No QEMU
// process outlives the call. The probe's QEMU logs to log.
func ProbeAccel(ctx context.Context, kernel, initrd string, timeout time.Duration, log *slog.Logger, markers ...string) (accel, reason string) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return AccelTCG, "/dev/kvm absent"
	}
	if err != nil {
		return AccelTCG, fmt.Sprintf("/dev/kvm not usable: %v", err)
	}
	f.Close()
	if kernel == "" {
		return AccelTCG, "/dev/kvm present but no probe kernel given to prove a guest boots under KVM"
	}
	elapsed, err := bootProbe(ctx, AccelKVM, kernel, initrd, timeout, markers, log)
	if err != nil {
		return AccelTCG, fmt.Sprintf("KVM guest did not reach userspace: %v", err)
	}
	return AccelKVM, fmt.Sprintf("KVM guest reached userspace in %s", elapsed.Round(time.Millisecond))
}

// BootProbe is the real ProbeFunc: ProbeAccel with kernel and initrd, or
// with the newest /boot kernel when kernel is empty. timeout bounds the
// guest's boot (the context given to the ProbeFunc bounds it too). The
// probe's QEMU logs to log.
func BootProbe(kernel, initrd string, timeout time.Duration, log *slog.Logger) ProbeFunc {
	return func(ctx context.Context) (string, string, error) {
		k, i := kernel, initrd
		if k == "" {
			k, i = NewestBootKernel("/boot")
		}
		if k == "" {
			if _, err := os.Stat("/dev/kvm"); err != nil {
				return AccelTCG, "/dev/kvm absent", nil
			}
			return AccelTCG, "/dev/kvm exists but no kernel to probe it with (--probe-kernel)", nil
		}
		accel, reason := ProbeAccel(ctx, k, i, timeout, log)
		return accel, reason, nil
	}
}

// NewestBootKernel finds the newest dir/vmlinuz-VERSION, comparing
// versions number by number (6.1.0-10 is newer than 6.1.0-9), and its
// dir/initrd.img-VERSION when there is one.
func NewestBootKernel(dir string) (kernel, initrd string) {
	ks, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*"))
	if len(ks) == 0 {
		return "", ""
	}
	version := func(p string) string { return strings.TrimPrefix(filepath.Base(p), "vmlinuz-") }
	sort.SliceStable(ks, func(i, j int) bool { return compareVersions(version(ks[i]), version(ks[j])) < 0 })
	kernel = ks[len(ks)-1]
	candidate := filepath.Join(dir, "initrd.img-"+version(kernel))
	if _, err := os.Stat(candidate); err == nil {
		initrd = candidate
	}
	return kernel, initrd
}

// compareVersions orders version strings the way humans read them: runs of
// digits compare as numbers, everything else byte by byte.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		switch {
		case da && db:
			na, ra := leadingDigits(a)
			nb, rb := leadingDigits(b)
			na, nb = strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if len(na) != len(nb) {
				return cmpInt(len(na), len(nb))
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = ra, rb
		case a[0] != b[0]:
			return cmpInt(int(a[0]), int(b[0]))
		default:
			a, b = a[1:], b[1:]
		}
	}
	return cmpInt(len(a), len(b))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// bootProbe boots kernel+initrd under accel in a throwaway run directory
// and waits for a marker on the serial console. The QEMU is always killed
// and the directory removed before it returns.
func bootProbe(ctx context.Context, accel, kernel, initrd string, timeout time.Duration, markers []string, log *slog.Logger) (time.Duration, error) {
	if len(markers) == 0 {
		markers = DefaultProbeMarkers
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// The daemon's PID in the names tells whose probe a leftover was.
	tag := strconv.Itoa(os.Getpid())
	dir, err := os.MkdirTemp("", "stagehand-probe-"+tag+"-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	var nonce [6]byte
	rand.Read(nonce[:])
	spec := Spec{
		ID:        "stagehand-accel-probe-" + tag + "-" + hex.EncodeToString(nonce[:]),
		CPUs:      1,
		MemoryMiB: 256,
		Accel:     accel,
		Kernel:    kernel,
		Initrd:    initrd,
		Cmdline:   probeCmdline,
		RunDir:    dir,
	}
	began := time.Now()
	vm, err := Start(ctx, spec, log)
	if err != nil {
		return 0, err
	}
	defer func() {
		kctx, kcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer kcancel()
		vm.Kill(kctx)
	}()

	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		console, _ := os.ReadFile(spec.SerialLogPath())
		for _, m := range markers {
			if bytes.Contains(console, []byte(m)) {
				return time.Since(began), nil
			}
		}
		if !vm.Running() {
			return 0, fmt.Errorf("qemu exited: %s; console: %s", qemuMessage(dir, ""), lastLine(console))
		}
		select {
		case <-ctx.Done():
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, _ := vm.Status(sctx)
			scancel()
			return 0, fmt.Errorf("no %q on the console within %s (status %s); last console line: %q",
				markers[0], timeout, st, lastLine(console))
		case <-t.C:
		}
	}
}

// lastLine returns the last non-empty line of a log, for error messages.
func lastLine(b []byte) string {
	b = bytes.TrimRight(b, "\r\n ")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 200 {
		b = b[len(b)-200:]
	}
	return string(bytes.TrimSpace(b))
}
