// Package hypervisor runs VMs as QEMU processes and talks to them over QMP.
// It owns the QEMU command line, the per-VM run directory (monitor and
// console sockets, pidfile, logs), save/resume of guest state, re-adoption
// of running VMs after a daemon restart, and the KVM-or-TCG probe.
package hypervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"stagehand/internal/errdefs"
)

// ErrNotRunning means the VM's QEMU process is gone (or its pidfile points
// at some other process). After a daemon restart the caller marks such a
// VM failed.
var ErrNotRunning = errors.New("qemu process not running")

// Accelerators for Spec.Accel.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// Files kept in a VM's run directory.
const (
	qmpSocketName     = "qmp.sock"
	consoleSocketName = "console.sock"
	vncSocketName     = "vnc.sock"
	pidfileName       = "qemu.pid"
	serialLogName     = "serial.log"
	qemuLogName       = "qemu.log"
)

// unixPathMax is the size of sun_path: longer socket paths cannot be bound.
const unixPathMax = 108

// NIC is one virtio-net interface backed by an existing tap device.
type NIC struct {
	Tap string // host tap interface name, created by the caller
	MAC string // guest MAC, e.g. "52:54:00:12:34:56"
}

// Spec describes one VM's QEMU process.
type Spec struct {
	// ID is unique among VMs on the host (e.g. "cfg-web/vm-db"). It is
	// passed as "-name ID", which is how a PID read from a pidfile is
	// recognised as this VM's QEMU.
	ID        string
	CPUs      int
	MemoryMiB int
	Accel     string // AccelKVM or AccelTCG; empty means TCG

	// Disks are absolute paths of qcow2 top layers, attached as virtio-blk
	// in order. Without a Kernel, the firmware boots the first one.
	Disks []string
	// ReadOnlyDrives are absolute paths of raw images (a cloud-init seed)
	// attached read-only as virtio-blk after Disks, so a guest that reads
	// its first disk (/dev/vda) still finds Disks[0] there. Their drives
	// are named roN, never driveN: snapshots and backing switches address
	// the VM's own disks by that name alone.
	ReadOnlyDrives []string
	NICs           []NIC

	// Direct kernel boot, when Kernel is set.
	Kernel  string
	Initrd  string
	Cmdline string

	// RunDir holds qmp.sock, console.sock, vnc.sock, qemu.pid,
	// serial.log and qemu.log. It is created if missing. Keep it short: socket paths
	// must fit in 108 bytes.
	RunDir string

	// IncomingStateFile, when set, resumes the guest from a file written by
	// VM.SaveState instead of booting it.
	IncomingStateFile string

	// Binary overrides the QEMU binary (default qemu-system-x86_64 on PATH).
	Binary string

	// Netns, when set, names the network namespace (as `ip netns` knows
	// it) QEMU runs in: a tap is found by name in the namespace of the
	// process that opens it, so a fenced VM's QEMU must run in its fence.
	// QEMU is started through `ip netns exec`, which execs it in place, so
	// the process is QEMU itself and Adopt recognises it as usual.
	Netns string
}

// SerialLogPath is the file that records everything the guest writes to
// its serial console, across restarts.
func (s Spec) SerialLogPath() string { return filepath.Join(s.RunDir, serialLogName) }

// ConsoleSocketPath is the unix socket a console client connects to for
// interactive access to the serial port.
func (s Spec) ConsoleSocketPath() string { return filepath.Join(s.RunDir, consoleSocketName) }

// VNCSocketPath is the unix socket of the VM's screen, keyboard and mouse
// (RFB, the VNC protocol), shared by any number of clients.
func (s Spec) VNCSocketPath() string { return filepath.Join(s.RunDir, vncSocketName) }

func (s Spec) accel() string {
	if s.Accel == "" {
		return AccelTCG
	}
	return s.Accel
}

// Validate checks the spec without touching the system beyond stat calls.
func (s Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return errdefs.Invalid("vm %q: "+format, append([]any{s.ID}, args...)...)
	}
	if s.ID == "" {
		return errdefs.Invalid("vm spec: empty ID")
	}
	for _, r := range s.ID {
		// Commas would be parsed by QEMU's option syntax; anything odd
		// makes the cmdline match in Adopt ambiguous.
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/:@", r)) {
			return bad("ID may hold only letters, digits and ._-/:@")
		}
	}
	if s.CPUs < 1 {
		return bad("CPUs must be at least 1, got %d", s.CPUs)
	}
	if s.MemoryMiB < 16 {
		return bad("memory must be at least 16 MiB, got %d", s.MemoryMiB)
	}
	if a := s.accel(); a != AccelKVM && a != AccelTCG {
		return bad("unknown accelerator %q (want kvm or tcg)", s.Accel)
	}
	if !filepath.IsAbs(s.RunDir) {
		return bad("run directory %q is not an absolute path", s.RunDir)
	}
	for _, name := range []string{qmpSocketName, consoleSocketName, vncSocketName} {
		if p := filepath.Join(s.RunDir, name); len(p) >= unixPathMax {
			return bad("socket path %s is longer than %d bytes; use a shorter run directory", p, unixPathMax-1)
		}
	}
	for _, d := range append(append([]string(nil), s.Disks...), s.ReadOnlyDrives...) {
		if !filepath.IsAbs(d) {
			return bad("disk %q is not an absolute path", d)
		}
	}
	if s.Kernel == "" && len(s.Disks) == 0 {
		return bad("nothing to boot: no kernel and no disk")
	}
	for _, p := range []string{s.Kernel, s.Initrd, s.IncomingStateFile} {
		if p != "" && !filepath.IsAbs(p) {
			return bad("%q is not an absolute path", p)
		}
	}
	if s.Initrd != "" && s.Kernel == "" {
		return bad("initrd given without a kernel")
	}
	for i, n := range s.NICs {
		if n.Tap == "" || len(n.Tap) > 15 || strings.ContainsAny(n.Tap, ",/ \x00") {
			return bad("nic %d: bad tap name %q", i, n.Tap)
		}
		hw, err := net.ParseMAC(n.MAC)
		if err != nil || len(hw) != 6 {
			return bad("nic %d: bad MAC %q", i, n.MAC)
		}
	}
	return nil
}

// escapeOpt doubles commas, QEMU's escape inside option values.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Args returns QEMU's argument list (without the binary) for the spec.
func (s Spec) Args() []string {
	run := func(name string) string { return filepath.Join(s.RunDir, name) }
	args := []string{
		// -D first: once QEMU has parsed it (with -daemonize), its stderr
		// goes to the log, so later errors land there too.
		"-D", run(qemuLogName),
		"-name", s.ID,
		"-machine", "q35",
		"-accel", s.accel(),
	}
	if s.accel() == AccelKVM {
		args = append(args, "-cpu", "host")
	}
	args = append(args,
		"-smp", strconv.Itoa(s.CPUs),
		"-m", strconv.Itoa(s.MemoryMiB),
		"-nodefaults", "-no-user-config",
		// No window on the host; the screen is a standard VGA card shown
		// over VNC on a unix socket (the daemon proxies it to browsers),
		// shared by all its clients at once rather than one taking it
		// from the other.
		"-display", "none",
		"-device", "VGA",
		"-vnc", "unix:"+escapeOpt(run(vncSocketName))+",share=force-shared",
		// The serial port is a socket a console client can attach to at
		// any time, and everything is logged whether or not one is.
		"-chardev", "socket,id=serial0,path="+escapeOpt(run(consoleSocketName))+
			",server=on,wait=off,logfile="+escapeOpt(run(serialLogName))+",logappend=on",
		"-serial", "chardev:serial0",
		"-chardev", "socket,id=qmp,path="+escapeOpt(run(qmpSocketName))+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-pidfile", run(pidfileName),
		"-daemonize",
		"-S",
	)
	for i, d := range s.Disks {
		dev := fmt.Sprintf("virtio-blk-pci,drive=drive%d,id=disk%d", i, i)
		if i == 0 && s.Kernel == "" {
			dev += ",bootindex=0"
		}
		// The top layer's nodes are named (driveN-fmt, driveN-file) so that
		// SwitchBacking can reopen the top: QEMU refuses blockdev-reopen on
		// a node whose name it generated itself.
		args = append(args,
			"-drive", fmt.Sprintf("if=none,id=drive%d,node-name=%s,file.node-name=%s,format=qcow2,discard=unmap,file=%s",
				i, topNodeName(i), topFileNodeName(i), escapeOpt(d)),
			"-device", dev)
	}
	for i, d := range s.ReadOnlyDrives {
		args = append(args,
			"-drive", fmt.Sprintf("if=none,id=ro%d,format=raw,readonly=on,file=%s", i, escapeOpt(d)),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=ro%d,id=rodisk%d", i, i))
	}
	for i, n := range s.NICs {
		// romfile= leaves out the iPXE option ROM: nothing boots from the
		// network here, and SeaBIOS would spend time initialising it.
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=net%d,ifname=%s,script=no,downscript=no", i, n.Tap),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=net%d,id=nic%d,mac=%s,romfile=", i, i, n.MAC))
	}
	if s.Kernel != "" {
		args = append(args, "-kernel", s.Kernel)
		if s.Initrd != "" {
			args = append(args, "-initrd", s.Initrd)
		}
		if s.Cmdline != "" {
			args = append(args, "-append", s.Cmdline)
		}
	}
	if s.IncomingStateFile != "" {
		args = append(args, "-incoming", "defer")
	}
	return args
}

// VM is a handle on one running QEMU process. Closing the handle leaves the
// process running; Adopt makes a new handle for it.
type VM struct {
	id     string
	runDir string
	proc   process
	log    *slog.Logger

	mu  sync.Mutex
	mon *Monitor
}

// ID returns the VM's ID (the -name of its QEMU).
func (v *VM) ID() string { return v.id }

// PID returns the QEMU process ID.
func (v *VM) PID() int { return v.proc.pid }

// RunDir returns the VM's run directory.
func (v *VM) RunDir() string { return v.runDir }

// SerialLogPath returns the serial console log.
func (v *VM) SerialLogPath() string { return filepath.Join(v.runDir, serialLogName) }

// ConsoleSocketPath returns the serial console socket.
func (v *VM) ConsoleSocketPath() string { return filepath.Join(v.runDir, consoleSocketName) }

// VNCSocketPath returns the VNC socket of the VM's screen.
func (v *VM) VNCSocketPath() string { return filepath.Join(v.runDir, vncSocketName) }

// Start launches QEMU for spec and returns once the guest runs (or, with
// IncomingStateFile, once its saved state is loaded and it runs again).
// QEMU daemonizes into its own session, so it outlives the caller.
// ctx bounds the start only, not the VM's life. On error no process is
// left behind and the error carries QEMU's own message. The VM logs to log
// (the daemon's; nil is slog.Default()).
func Start(ctx context.Context, spec Spec, log *slog.Logger) (_ *VM, err error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	log = orDefault(log).With("vm", spec.ID)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("start vm %q: "+format, append([]any{spec.ID}, args...)...)
	}

	binary := spec.Binary
	if binary == "" {
		binary = "qemu-system-x86_64"
	}
	binPath, err := exec.LookPath(binary)
	if err != nil {
		return nil, errdefs.Unavailable("start vm %q: %w", spec.ID, err)
	}
	if spec.IncomingStateFile != "" {
		if _, err := os.Stat(spec.IncomingStateFile); err != nil {
			return nil, errdefs.Invalid("start vm %q: saved state: %w", spec.ID, err)
		}
	}
	if err := os.MkdirAll(spec.RunDir, 0o700); err != nil {
		return nil, fail("%w", err)
	}
	pidfile := filepath.Join(spec.RunDir, pidfileName)
	if p, err := qemuProcessFor(pidfile, spec.ID); err == nil {
		return nil, errdefs.Conflict("start vm %q: already running as pid %d", spec.ID, p.pid)
	}
	// Leftovers of a previous run that did not exit cleanly.
	for _, name := range []string{pidfileName, qmpSocketName, consoleSocketName, vncSocketName} {
		if err := os.Remove(filepath.Join(spec.RunDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fail("%w", err)
		}
	}

	args := spec.Args()
	if spec.Netns != "" {
		ipPath, err := exec.LookPath("ip")
		if err != nil {
			return nil, errdefs.Unavailable("start vm %q in namespace %s: %w", spec.ID, spec.Netns, err)
		}
		args = append([]string{"netns", "exec", spec.Netns, binPath}, args...)
		binPath = ipPath
	}
	cmd := exec.Command(binPath, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 2 * time.Second // in case a daemonized child kept the pipe
	// Its own session: signals to the daemon's process group (Ctrl-C, a
	// service manager stopping the daemon) must not reach the VMs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	log.Info("starting qemu", "accel", spec.accel(), "argv", strings.Join(cmd.Args, " "))
	began := time.Now()

	if err := cmd.Start(); err != nil {
		return nil, fail("%w", err)
	}
	// The foreground process exits once the daemon is initialised (or has
	// failed); its exit status tells which.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-exited
		waitErr = ctx.Err()
	}

	// From here on, anything that goes wrong must not leave a QEMU behind.
	var proc process
	defer func() {
		if err == nil {
			return
		}
		killCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		leftovers := qemuProcessesByID(spec.ID)
		if proc.pid != 0 {
			leftovers = append(leftovers, proc)
		}
		for _, p := range leftovers {
			if kerr := p.kill(killCtx); kerr != nil {
				log.Error("cannot kill qemu after failed start", "pid", p.pid, "err", kerr)
			}
		}
	}()

	if errors.Is(waitErr, exec.ErrWaitDelay) && cmd.ProcessState.Success() {
		waitErr = nil // exited fine; only the stderr pipe lingered
	}
	if waitErr != nil {
		return nil, fail("%s: %w", qemuMessage(spec.RunDir, stderr.String()), waitErr)
	}
	proc, err = qemuProcessFor(pidfile, spec.ID)
	if err != nil {
		return nil, fail("after daemonize: %w: %s", err, qemuMessage(spec.RunDir, stderr.String()))
	}
	v := &VM{id: spec.ID, runDir: spec.RunDir, proc: proc, log: log.With("pid", proc.pid)}

	mon, err := dialRunDirMonitor(ctx, spec.RunDir)
	if err != nil {
		return nil, fail("%w", err)
	}
	v.mon = mon
	defer func() {
		if err != nil {
			mon.Close()
		}
	}()

	if spec.IncomingStateFile != "" {
		if err := loadState(ctx, v, spec.IncomingStateFile); err != nil {
			return nil, fail("resume from %s: %w", spec.IncomingStateFile, err)
		}
	}
	if _, err := mon.Execute(ctx, "cont", nil); err != nil {
		return nil, fail("%w", v.withExitReason(err))
	}
	v.log.Info("qemu running", "elapsed", time.Since(began).Round(time.Millisecond))
	return v, nil
}

// qemuMessage gathers what QEMU said about a failure: its stderr before it
// switched to the log file, and the log file.
func qemuMessage(runDir, stderr string) string {
	var parts []string
	if s := strings.TrimSpace(stderr); s != "" {
		parts = append(parts, s)
	}
	if b, err := os.ReadFile(filepath.Join(runDir, qemuLogName)); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			if len(s) > 4000 {
				s = "…" + s[len(s)-4000:]
			}
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return "qemu gave no message"
	}
	// One line: the CLI prints errors on one line.
	return strings.ReplaceAll(strings.Join(parts, "\n"), "\n", "; ")
}

// exitedError reports a monitor failure caused by QEMU exiting: it reads
// as QEMU's last words and matches both ErrNotRunning and the cause.
type exitedError struct {
	qemuSaid string
	cause    error
}

func (e *exitedError) Error() string { return "qemu exited: " + e.qemuSaid }
func (e *exitedError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrNotRunning}
	}
	return []error{ErrNotRunning, e.cause}
}

// withExitReason turns a monitor disconnect into an exitedError when the
// process died, which is the usual reason for one.
func (v *VM) withExitReason(err error) error {
	if errors.Is(err, ErrMonitorDisconnect) {
		time.Sleep(50 * time.Millisecond) // let QEMU finish dying and logging
		if !v.proc.alive() {
			return &exitedError{qemuSaid: qemuMessage(v.runDir, ""), cause: err}
		}
	}
	return err
}

// monitorDialTimeout bounds the QMP handshake when the caller's context
// has no deadline: a socket already held by another client never greets.
const monitorDialTimeout = 30 * time.Second

func dialRunDirMonitor(ctx context.Context, runDir string) (*Monitor, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, monitorDialTimeout)
		defer cancel()
	}
	return DialMonitor(ctx, filepath.Join(runDir, qmpSocketName))
}

// Adopt takes over a QEMU process started earlier (typically by a previous
// run of the daemon) from its run directory: the PID in the pidfile is
// trusted only if its command line is QEMU's with "-name id", and
// reconnecting the monitor and querying its status is the re-adoption.
// When the process is gone the error wraps ErrNotRunning. The VM logs to
// log (nil is slog.Default()).
func Adopt(ctx context.Context, runDir, id string, log *slog.Logger) (*VM, error) {
	proc, err := qemuProcessFor(filepath.Join(runDir, pidfileName), id)
	if err != nil {
		return nil, fmt.Errorf("adopt vm %q: %w", id, err)
	}
	mon, err := dialRunDirMonitor(ctx, runDir)
	if err != nil {
		return nil, fmt.Errorf("adopt vm %q (pid %d): %w", id, proc.pid, err)
	}
	v := &VM{id: id, runDir: runDir, proc: proc, mon: mon,
		log: orDefault(log).With("vm", id, "pid", proc.pid)}
	st, err := v.Status(ctx)
	if err != nil {
		mon.Close()
		return nil, fmt.Errorf("adopt vm %q (pid %d): %w", id, proc.pid, err)
	}
	v.log.Info("adopted qemu", "status", st)
	return v, nil
}

// monitor returns the QMP connection, reconnecting when the previous one
// ended while the process still runs.
func (v *VM) monitor(ctx context.Context) (*Monitor, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.mon != nil {
		select {
		case <-v.mon.Done():
		default:
			return v.mon, nil
		}
	}
	if !v.proc.alive() {
		return nil, fmt.Errorf("vm %q: pid %d: %w", v.id, v.proc.pid,
			&exitedError{qemuSaid: qemuMessage(v.runDir, "")})
	}
	mon, err := dialRunDirMonitor(ctx, v.runDir)
	if err != nil {
		return nil, fmt.Errorf("vm %q: %w", v.id, err)
	}
	v.mon = mon
	return mon, nil
}

// Monitor returns the VM's QMP connection, for events and commands this
// package does not wrap. If the connection had ended while QEMU still
// runs, a new one is made, with a new Events channel.
func (v *VM) Monitor(ctx context.Context) (*Monitor, error) { return v.monitor(ctx) }

// execute runs one QMP command on the VM.
func (v *VM) execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	mon, err := v.monitor(ctx)
	if err != nil {
		return nil, err
	}
	ret, err := mon.Execute(ctx, cmd, args)
	if err != nil {
		return nil, fmt.Errorf("vm %q: %w", v.id, v.withExitReason(err))
	}
	return ret, nil
}

// migrationFile hands f to QEMU under name (getfd) and returns the "fd:"
// migration URI that reads or writes it. QEMU reads and writes the file
// itself: through "exec:cat" every byte also crossed a pipe and a second
// process, which doubled a save's and a load's time (a 256 MiB guest's
// 95 MB state: saved in 75–94 ms instead of 145–185, loaded in 55–63 ms
// instead of 90–120). QEMU closes its copy when the migration ends.
func (v *VM) migrationFile(ctx context.Context, name string, f *os.File) (string, error) {
	mon, err := v.monitor(ctx)
	if err != nil {
		return "", err
	}
	if _, err := mon.ExecuteWithFile(ctx, "getfd", map[string]any{"fdname": name}, f); err != nil {
		return "", fmt.Errorf("vm %q: %w", v.id, v.withExitReason(err))
	}
	return "fd:" + name, nil
}

// RunState is QEMU's run state as query-status reports it.
type RunState string

// The run states callers are likely to meet.
const (
	StateRunning       RunState = "running"
	StatePaused        RunState = "paused"
	StateInMigrate     RunState = "inmigrate"
	StatePostMigrate   RunState = "postmigrate"
	StateFinishMigrate RunState = "finish-migrate"
	StatePrelaunch     RunState = "prelaunch"
	StateShutdown      RunState = "shutdown"
	StateInternalError RunState = "internal-error"
	StateGuestPanicked RunState = "guest-panicked"
)

// Status returns the run state from query-status.
func (v *VM) Status(ctx context.Context) (RunState, error) {
	ret, err := v.execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status RunState `json:"status"`
	}
	if err := json.Unmarshal(ret, &st); err != nil {
		return "", fmt.Errorf("vm %q: query-status: %w", v.id, err)
	}
	return st.Status, nil
}

// PowerDown asks the guest to shut down (an ACPI power button press, what
// `vm stop` does) and returns at once; the guest may ignore it. Shutdown
// waits and escalates.
func (v *VM) PowerDown(ctx context.Context) error {
	_, err := v.execute(ctx, "system_powerdown", nil)
	return err
}

// Reset is a hard reset of the guest, like pressing the reset button.
func (v *VM) Reset(ctx context.Context) error {
	_, err := v.execute(ctx, "system_reset", nil)
	return err
}

// Pause stops the guest's CPUs; the process stays.
func (v *VM) Pause(ctx context.Context) error {
	_, err := v.execute(ctx, "stop", nil)
	return err
}

// Continue runs a paused guest again (QMP cont).
func (v *VM) Continue(ctx context.Context) error {
	_, err := v.execute(ctx, "cont", nil)
	return err
}

// Running reports whether the QEMU process still exists.
func (v *VM) Running() bool { return v.proc.alive() }

// Wait blocks until the QEMU process has exited or ctx ends.
func (v *VM) Wait(ctx context.Context) error { return v.proc.wait(ctx) }

// Kill ends QEMU with SIGKILL and waits for the process to disappear. The
// guest gets no chance to flush anything.
func (v *VM) Kill(ctx context.Context) error {
	v.closeMonitor()
	if err := v.proc.kill(ctx); err != nil {
		return fmt.Errorf("kill vm %q: %w", v.id, err)
	}
	return nil
}

// quitTimeout bounds how long QEMU gets to exit after "quit".
const quitTimeout = 10 * time.Second

// Shutdown powers the VM off: an ACPI power-down request first, and if the
// guest has not turned itself off after timeout, QMP quit, then SIGKILL.
// It returns once the process is gone.
func (v *VM) Shutdown(ctx context.Context, timeout time.Duration) error {
	if !v.proc.alive() {
		v.closeMonitor()
		return nil
	}
	// A guest that is not running cannot see the button.
	if st, err := v.Status(ctx); err == nil && st == StateRunning {
		if err := v.PowerDown(ctx); err == nil {
			wctx, cancel := context.WithTimeout(ctx, timeout)
			err := v.proc.wait(wctx)
			cancel()
			if err == nil {
				v.log.Info("guest powered off")
				v.closeMonitor()
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("shutdown vm %q: %w", v.id, ctx.Err())
			}
			v.log.Warn("guest ignored ACPI power-down; quitting qemu", "timeout", timeout)
		}
	}
	return v.quit(ctx)
}

// quit asks QEMU to exit, and kills it if it does not.
func (v *VM) quit(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, quitTimeout)
	defer cancel()
	if _, err := v.execute(qctx, "quit", nil); err == nil || errors.Is(err, ErrMonitorDisconnect) {
		if v.proc.wait(qctx) == nil {
			v.closeMonitor()
			return nil
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("shutdown vm %q: %w", v.id, ctx.Err())
	}
	v.log.Warn("qemu did not quit; killing it")
	return v.Kill(ctx)
}

func (v *VM) closeMonitor() {
	v.mu.Lock()
	mon := v.mon
	v.mu.Unlock()
	if mon != nil {
		mon.Close()
	}
}

// Close releases the handle (the QMP connection). QEMU keeps running.
func (v *VM) Close() error {
	v.closeMonitor()
	return nil
}

// orDefault is log, or slog.Default() when log is nil.
func orDefault(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.Default()
	}
	return log
}
