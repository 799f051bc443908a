package hypervisor

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/syncbuf"
)

func TestSpecValidate(t *testing.T) {
	good := Spec{ID: "cfg-web/vm-db", CPUs: 1, MemoryMiB: 128, RunDir: "/run/sh/x",
		Disks: []string{"/var/lib/sh/a.qcow2"},
		NICs:  []NIC{{Tap: "sh-tap0", MAC: "52:54:00:00:00:01"}}}
	tests := []struct {
		name   string
		mutate func(*Spec)
		ok     bool
	}{
		{"good", func(*Spec) {}, true},
		{"kernel boot without disks", func(s *Spec) { s.Disks = nil; s.Kernel = "/k"; s.Initrd = "/i" }, true},
		{"empty id", func(s *Spec) { s.ID = "" }, false},
		{"comma in id", func(s *Spec) { s.ID = "a,b" }, false},
		{"space in id", func(s *Spec) { s.ID = "a b" }, false},
		{"no cpus", func(s *Spec) { s.CPUs = 0 }, false},
		{"tiny memory", func(s *Spec) { s.MemoryMiB = 8 }, false},
		{"bad accel", func(s *Spec) { s.Accel = "hvf" }, false},
		{"relative run dir", func(s *Spec) { s.RunDir = "run" }, false},
		{"run dir too long for sockets", func(s *Spec) { s.RunDir = "/" + strings.Repeat("d", 100) }, false},
		{"relative disk", func(s *Spec) { s.Disks = []string{"a.qcow2"} }, false},
		{"nothing to boot", func(s *Spec) { s.Disks = nil }, false},
		{"initrd without kernel", func(s *Spec) { s.Initrd = "/i" }, false},
		{"relative state file", func(s *Spec) { s.IncomingStateFile = "state" }, false},
		{"bad mac", func(s *Spec) { s.NICs[0].MAC = "zz" }, false},
		{"long tap name", func(s *Spec) { s.NICs[0].Tap = "a-very-long-tap-name" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			s.NICs = slices.Clone(good.NICs)
			tt.mutate(&s)
			err := s.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tt.ok && !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("Validate = %v, want an invalid error", err)
			}
		})
	}
}

func TestSpecArgs(t *testing.T) {
	s := Spec{ID: "cfg-web/vm-db", CPUs: 2, MemoryMiB: 256, Accel: AccelKVM, RunDir: "/run/sh/x",
		Disks:          []string{"/d/a,b.qcow2", "/d/c.qcow2"},
		ReadOnlyDrives: []string{"/run/sh/x/seed.iso"},
		NICs:           []NIC{{Tap: "tap0", MAC: "52:54:00:00:00:01"}},
	}
	args := strings.Join(s.Args(), " ")
	// The seed comes after the VM's own disks (the guest reads its marker
	// from /dev/vda), read-only, raw.
	if d1, seed := strings.Index(args, "id=disk1"), strings.Index(args, "id=ro0"); d1 < 0 || seed < d1 {
		t.Errorf("read-only drive not after the disks: %s", args)
	}
	for _, want := range []string{
		"-name cfg-web/vm-db ",
		"-machine q35 -accel kvm -cpu host -smp 2 -m 256 -nodefaults -no-user-config -display none",
		"-display none -device VGA -vnc unix:/run/sh/x/vnc.sock,share=force-shared ",
		"-chardev socket,id=serial0,path=/run/sh/x/console.sock,server=on,wait=off,logfile=/run/sh/x/serial.log,logappend=on -serial chardev:serial0",
		"-chardev socket,id=qmp,path=/run/sh/x/qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control",
		"-pidfile /run/sh/x/qemu.pid -daemonize -S",
		"-drive if=none,id=drive0,node-name=drive0-fmt,file.node-name=drive0-file,format=qcow2,discard=unmap,file=/d/a,,b.qcow2 -device virtio-blk-pci,drive=drive0,id=disk0,bootindex=0",
		"-drive if=none,id=drive1,node-name=drive1-fmt,file.node-name=drive1-file,format=qcow2,discard=unmap,file=/d/c.qcow2 -device virtio-blk-pci,drive=drive1,id=disk1 ",
		"-drive if=none,id=ro0,format=raw,readonly=on,file=/run/sh/x/seed.iso -device virtio-blk-pci,drive=ro0,id=rodisk0 ",
		"-netdev tap,id=net0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=net0,id=nic0,mac=52:54:00:00:00:01,romfile=",
	} {
		if !strings.Contains(args+" ", want) {
			t.Errorf("argv lacks %q\nargv: %s", want, args)
		}
	}
	if strings.Contains(args, "-incoming") || strings.Contains(args, "-kernel") {
		t.Errorf("unexpected -incoming or -kernel: %s", args)
	}

	s.Accel, s.Disks, s.NICs = "", nil, nil
	s.Kernel, s.Initrd, s.Cmdline, s.IncomingStateFile = "/k", "/i", "console=ttyS0 x=1", "/s"
	args2 := s.Args()
	args = strings.Join(args2, " ")
	for _, want := range []string{"-accel tcg -smp", "-kernel /k -initrd /i -append console=ttyS0 x=1 -incoming defer"} {
		if !strings.Contains(args, want) {
			t.Errorf("argv lacks %q\nargv: %s", want, args)
		}
	}
	if strings.Contains(args, "-cpu host") {
		t.Errorf("tcg with -cpu host: %s", args)
	}
}

func TestIsQEMUFor(t *testing.T) {
	tests := []struct {
		cmdline string
		want    bool
	}{
		{"/usr/bin/qemu-system-x86_64\x00-D\x00/x\x00-name\x00cfg/vm\x00-S\x00", true},
		{"qemu-system-x86_64\x00-name\x00cfg/vm", true},
		{"/usr/bin/qemu-system-x86_64\x00-name\x00cfg/vm2\x00", false},
		{"/usr/bin/qemu-system-x86_64\x00-name\x00xcfg/vm\x00", false},
		{"/bin/sleep\x00-name\x00cfg/vm\x00", false},
		{"/usr/bin/qemu-system-x86_64\x00cfg/vm\x00-name\x00", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isQEMUFor([]byte(tt.cmdline), "cfg/vm"); got != tt.want {
			t.Errorf("isQEMUFor(%q) = %v, want %v", tt.cmdline, got, tt.want)
		}
	}
}

// TestVMLifecycle drives one guest through boot, save, resume, re-adoption
// and an ACPI power-off, timing each step.
func TestVMLifecycle(t *testing.T) {
	g := needGuest(t)
	spec := testSpec(t, g, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	serial := spec.SerialLogPath()
	// The VM logs to the logger it is given (the daemon's), not slog's
	// default.
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))

	began := time.Now()
	vm, err := Start(ctx, spec, log)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	started := time.Since(began)
	waitSerial(t, serial, 0, regexp.MustCompile(`STAGEHAND-INIT`), 60*time.Second)
	t.Logf("start → init line on serial: %s (Start returned after %s)", time.Since(began).Round(time.Millisecond), started.Round(time.Millisecond))

	if st, err := vm.Status(ctx); err != nil || st != StateRunning {
		t.Fatalf("Status = %q, %v; want running", st, err)
	}
	// QEMU must not share the test's process group or session: it has to
	// outlive whoever started it.
	if pgid, err := syscall.Getpgid(vm.PID()); err != nil || pgid == syscall.Getpgrp() {
		t.Fatalf("qemu pgid %d (err %v) is the test's own group", pgid, err)
	}

	// Let the counter run a little, then save.
	waitSerial(t, serial, 0, regexp.MustCompile(`STAGEHAND-TICK 5 `), 30*time.Second)
	stateFile := filepath.Join(spec.RunDir, "state.bin")
	began = time.Now()
	if err := vm.SaveState(ctx, stateFile); err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	fi, err := os.Stat(stateFile)
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	t.Logf("save: %s, %d bytes", time.Since(began).Round(time.Millisecond), fi.Size())
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	if vm.Running() {
		t.Fatal("qemu still running after SaveState")
	}
	if _, err := os.Stat(stateFile + ".partial"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("partial state file left behind: %v", err)
	}
	savedTick, savedUptime := lastTick(t, serial)
	time.Sleep(time.Second) // nothing may be printed while it is saved
	if n, _ := lastTick(t, serial); n != savedTick {
		t.Fatalf("counter moved from %d to %d while saved", savedTick, n)
	}

	// Resume: the counter continues, the guest does not boot again.
	resumeFrom := fileSize(serial)
	rspec := spec
	rspec.IncomingStateFile = stateFile
	began = time.Now()
	vm2, err := Start(ctx, rspec, nil)
	if err != nil {
		t.Fatalf("Start from saved state: %v", err)
	}
	resumed := time.Since(began)
	m := waitSerial(t, serial, resumeFrom, tickRe, 30*time.Second)
	t.Logf("resume: Start returned after %s, first tick after %s", resumed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	n, _ := strconv.Atoi(m[1])
	up, _ := strconv.ParseFloat(m[2], 64)
	if n != savedTick+1 {
		t.Fatalf("first tick after resume is %d, want %d (the counter must continue)", n, savedTick+1)
	}
	if up < savedUptime || up > savedUptime+5 {
		t.Fatalf("guest uptime after resume %.2f, before save %.2f: the guest clock must continue", up, savedUptime)
	}
	if b, _ := os.ReadFile(serial); strings.Contains(string(b[resumeFrom:]), "STAGEHAND-INIT") {
		t.Fatal("guest booted again instead of resuming")
	}
	if st, err := vm2.Status(ctx); err != nil || st != StateRunning {
		t.Fatalf("Status after resume = %q, %v; want running", st, err)
	}

	// Drop the Go-side handle as a daemon restart would, and adopt the
	// process from its run directory.
	pid := vm2.PID()
	vm2.Close()
	adopted, err := Adopt(ctx, spec.RunDir, spec.ID, log)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	for _, want := range []string{`msg="starting qemu" vm=` + spec.ID, `msg="qemu running" vm=` + spec.ID, `msg="adopted qemu" vm=` + spec.ID} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the VM's log lacks %q:\n%s", want, logs)
		}
	}
	if adopted.PID() != pid {
		t.Fatalf("adopted pid %d, want %d", adopted.PID(), pid)
	}
	if st, err := adopted.Status(ctx); err != nil || st != StateRunning {
		t.Fatalf("Status after Adopt = %q, %v", st, err)
	}
	if _, err := Adopt(ctx, spec.RunDir, spec.ID+"x", nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Adopt with another VM's ID = %v, want ErrNotRunning", err)
	}

	// The guest listens for the power button: Shutdown takes the ACPI path.
	waitSerial(t, serial, 0, regexp.MustCompile(`STAGEHAND-ACPI armed \S+: Power Button`), 30*time.Second)
	from := fileSize(serial)
	began = time.Now()
	if err := adopted.Shutdown(ctx, 20*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	took := time.Since(began)
	t.Logf("shutdown via ACPI: %s", took.Round(time.Millisecond))
	if adopted.Running() {
		t.Fatal("qemu still running after Shutdown")
	}
	if b, _ := os.ReadFile(serial); !strings.Contains(string(b[from:]), "STAGEHAND-ACPI-POWEROFF") {
		t.Fatalf("guest did not see the power button (shutdown took %s)", took)
	}
	if _, err := adopted.Status(ctx); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Status after shutdown = %v, want ErrNotRunning", err)
	}
	if _, err := Adopt(ctx, spec.RunDir, spec.ID, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Adopt after shutdown = %v, want ErrNotRunning", err)
	}
}

// TestShutdownGuestIgnoresACPI: a guest that ignores the power button is
// quit after the timeout.
func TestShutdownGuestIgnoresACPI(t *testing.T) {
	g := needGuest(t)
	spec := testSpec(t, g, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := Start(ctx, spec, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitSerial(t, spec.SerialLogPath(), 0, regexp.MustCompile(`STAGEHAND-TICK 1 `), 60*time.Second)
	began := time.Now()
	if err := vm.Shutdown(ctx, time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	took := time.Since(began)
	t.Logf("shutdown with ACPI ignored: %s (timeout 1s, then quit)", took.Round(time.Millisecond))
	if vm.Running() {
		t.Fatal("qemu still running")
	}
	if took < time.Second {
		t.Fatalf("Shutdown returned after %s, before the ACPI timeout", took)
	}
}

// TestStartFailure: a missing disk makes QEMU refuse to start; the error
// carries QEMU's words and no process is left.
func TestStartFailure(t *testing.T) {
	g := needGuest(t)
	spec := testSpec(t, g, false)
	spec.Disks = []string{filepath.Join(spec.RunDir, "missing.qcow2")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := Start(ctx, spec, nil)
	if err == nil {
		vm.Kill(ctx)
		t.Fatal("Start with a missing disk succeeded")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "Could not open") || !strings.Contains(err.Error(), "missing.qcow2") {
		t.Fatalf("error lacks QEMU's message: %v", err)
	}
	if ps := qemuProcessesByID(spec.ID); len(ps) != 0 {
		t.Fatalf("qemu left running after failed start: %+v", ps)
	}

	// A bad saved state: QEMU exits while loading it.
	spec.Disks = nil
	bad := filepath.Join(spec.RunDir, "bad-state")
	os.WriteFile(bad, []byte("not a migration stream"), 0o600)
	spec.IncomingStateFile = bad
	if vm, err := Start(ctx, spec, nil); err == nil {
		vm.Kill(ctx)
		t.Fatal("Start from a bad state file succeeded")
	} else {
		t.Logf("bad state error: %v", err)
		if !strings.Contains(err.Error(), "Not a migration stream") || !errors.Is(err, ErrNotRunning) {
			t.Fatalf("bad state error lacks QEMU's message or ErrNotRunning: %v", err)
		}
	}
	if ps := qemuProcessesByID(spec.ID); len(ps) != 0 {
		t.Fatalf("qemu left running after failed resume: %+v", ps)
	}
}

// TestParallelStartAndAdoptGone starts several VMs at once, then kills one
// behind the handle's back: Adopt must say it is gone, and a pidfile that
// names some other process must not be trusted.
func TestParallelStartAndAdoptGone(t *testing.T) {
	g := needGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 3
	specs := make([]Spec, n)
	vms := make([]*VM, n)
	errs := make([]error, n)
	for i := range specs {
		specs[i] = testSpec(t, g, false)
	}
	began := time.Now()
	var wg sync.WaitGroup
	for i := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vms[i], errs[i] = Start(ctx, specs[i], nil)
		}()
	}
	wg.Wait()
	t.Logf("%d parallel starts: %s", n, time.Since(began).Round(time.Millisecond))
	pids := map[int]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
		pids[vms[i].PID()] = true
		if st, err := vms[i].Status(ctx); err != nil || st != StateRunning {
			t.Fatalf("vm %d: status %q, %v", i, st, err)
		}
	}
	if len(pids) != n {
		t.Fatalf("pids %v not distinct", pids)
	}
	if _, err := Start(ctx, specs[0], nil); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("second Start of a running VM = %v, want conflict", err)
	}

	if err := vms[0].Kill(ctx); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if _, err := Adopt(ctx, specs[0].RunDir, specs[0].ID, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Adopt of a killed VM = %v, want ErrNotRunning", err)
	}
	if _, err := vms[0].Status(ctx); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Status of a killed VM = %v", err)
	}
	// A recycled PID: the pidfile names this test process.
	os.WriteFile(filepath.Join(specs[0].RunDir, pidfileName), []byte(strconv.Itoa(os.Getpid())), 0o644)
	if _, err := Adopt(ctx, specs[0].RunDir, specs[0].ID, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Adopt with a foreign pid = %v, want ErrNotRunning", err)
	}
	for _, vm := range vms[1:] {
		if err := vm.Kill(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
