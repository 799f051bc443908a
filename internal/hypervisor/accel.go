package hypervisor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
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
// process outlives the call.
func ProbeAccel(ctx context.Context, kernel, initrd string, timeout time.Duration, markers ...string) (accel, reason string) {
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
	elapsed, err := bootProbe(ctx, AccelKVM, kernel, initrd, timeout, markers)
	if err != nil {
		return AccelTCG, fmt.Sprintf("KVM guest did not reach userspace: %v", err)
	}
	return AccelKVM, fmt.Sprintf("KVM guest reached userspace in %s", elapsed.Round(time.Millisecond))
}

// bootProbe boots kernel+initrd under accel in a throwaway run directory
// and waits for a marker on the serial console. The QEMU is always killed
// and the directory removed before it returns.
func bootProbe(ctx context.Context, accel, kernel, initrd string, timeout time.Duration, markers []string) (time.Duration, error) {
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
	vm, err := Start(ctx, spec)
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
		log, _ := os.ReadFile(spec.SerialLogPath())
		for _, m := range markers {
			if bytes.Contains(log, []byte(m)) {
				return time.Since(began), nil
			}
		}
		if !vm.Running() {
			return 0, fmt.Errorf("qemu exited: %s; console: %s", qemuMessage(dir, ""), lastLine(log))
		}
		select {
		case <-ctx.Done():
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, _ := vm.Status(sctx)
			scancel()
			return 0, fmt.Errorf("no %q on the console within %s (status %s); last console line: %q",
				markers[0], timeout, st, lastLine(log))
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
