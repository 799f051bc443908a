package hypervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ProbeKey is what a probe's result depends on. A cached result is reused
// only while every field is unchanged: another QEMU, another host kernel,
// a /dev/kvm that appeared, went or was re-created (a reboot, a module
// reload), or another probe kernel is probed again.
type ProbeKey struct {
	QEMU        string `json:"qemu"`         // first line of qemu-system-x86_64 --version
	Kernel      string `json:"kernel"`       // the host's uname -r
	KVM         string `json:"kvm"`          // "absent", or device numbers and mtime of /dev/kvm
	ProbeKernel string `json:"probe_kernel"` // path, size and mtime of the probe guest's kernel
}

// HostProbeKey reads the key of this host for a probe with probeKernel.
func HostProbeKey(ctx context.Context, probeKernel string) (ProbeKey, error) {
	var k ProbeKey
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", "--version").Output()
	if err != nil {
		return k, fmt.Errorf("qemu-system-x86_64 --version: %w", err)
	}
	k.QEMU, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return k, fmt.Errorf("uname: %w", err)
	}
	k.Kernel = unix.ByteSliceToString(uts.Release[:])
	k.KVM = "absent"
	if fi, err := os.Stat("/dev/kvm"); err == nil {
		k.KVM = fileIdentity(fi)
	} else if !errors.Is(err, os.ErrNotExist) {
		return k, fmt.Errorf("/dev/kvm: %w", err)
	}
	if probeKernel != "" {
		fi, err := os.Stat(probeKernel)
		if err != nil {
			return k, fmt.Errorf("probe kernel: %w", err)
		}
		k.ProbeKernel = probeKernel + " " + fileIdentity(fi)
	}
	return k, nil
}

// fileIdentity names a file's kind, device numbers (for a device), size
// and modification time: /dev/kvm's mtime changes when devtmpfs creates it
// again.
func fileIdentity(fi os.FileInfo) string {
	s := fmt.Sprintf("mode %s size %d mtime %s", fi.Mode().Type(), fi.Size(), fi.ModTime().UTC().Format(time.RFC3339Nano))
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode()&os.ModeDevice != 0 {
		s = fmt.Sprintf("device %d:%d ", unix.Major(st.Rdev), unix.Minor(st.Rdev)) + s
	}
	return s
}

// probeCache is the probe cache file.
type probeCache struct {
	Key      ProbeKey  `json:"key"`
	Accel    string    `json:"accel"`
	Reason   string    `json:"reason"`
	ProbedAt time.Time `json:"probed_at"`
}

// readProbeCache returns the cached result, nil when there is none.
func readProbeCache(path string) (*probeCache, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c probeCache
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Accel != AccelKVM && c.Accel != AccelTCG {
		return nil, fmt.Errorf("%s: unknown accelerator %q", path, c.Accel)
	}
	return &c, nil
}

// writeProbeCache replaces the cache file whole (temporary file, then
// rename), so a crash never leaves half a file.
func writeProbeCache(path string, c probeCache) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	_, err = w.Write(append(b, '\n'))
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
