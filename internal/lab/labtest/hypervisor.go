package labtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"stagehand/internal/hypervisor"
	"stagehand/internal/lab"
)

// Hypervisor is a fake lab.Hypervisor whose VMs are processes in memory.
// They outlive the lab.Service that started them, so a second Service over
// the same store and the same Hypervisor re-adopts them, as a restarted
// daemon does.
type Hypervisor struct {
	calls *Calls

	mu      sync.Mutex
	procs   map[string]*process // running, by VM ID
	lastPID int
	// died is closed when the daemon holding the current handles dies
	// (Restart), so that their watchers see nothing any more.
	died chan struct{}
}

var _ lab.Hypervisor = (*Hypervisor)(nil)

// NewHypervisor returns a Hypervisor that records its calls, and its VMs',
// in calls.
func NewHypervisor(calls *Calls) *Hypervisor {
	return &Hypervisor{calls: calls, procs: map[string]*process{}, lastPID: 1000, died: make(chan struct{})}
}

type process struct {
	id, runDir string
	pid        int
	exited     chan struct{}
	once       sync.Once
}

func (p *process) exit() { p.once.Do(func() { close(p.exited) }) }

func (p *process) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Start records "hv start vmN …" and starts a process. Like QEMU it
// refuses a second process for one ID and a state file that is missing.
func (h *Hypervisor) Start(ctx context.Context, spec hypervisor.Spec) (lab.VM, error) {
	var nics []string
	for _, n := range spec.NICs {
		nics = append(nics, h.calls.alias("tap", n.Tap))
	}
	resume := "-"
	if spec.IncomingStateFile != "" {
		resume = filepath.Base(spec.IncomingStateFile)
	}
	netns := spec.Netns
	if netns == "" {
		netns = "-"
	}
	if err := h.calls.call("hv start %s cpus=%d mem=%d accel=%s disks=%d nics=%v netns=%s resume=%s",
		vmName(spec.ID), spec.CPUs, spec.MemoryMiB, spec.Accel, len(spec.Disks), nics, fenceNS(netns), resume); err != nil {
		return nil, fmt.Errorf("start vm %q: %w", spec.ID, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.IncomingStateFile != "" {
		if _, err := os.Stat(spec.IncomingStateFile); err != nil {
			return nil, fmt.Errorf("start vm %q: %w", spec.ID, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.procs[spec.ID]; p != nil && p.alive() {
		return nil, fmt.Errorf("start vm %q: already running as pid %d", spec.ID, p.pid)
	}
	h.lastPID++
	p := &process{id: spec.ID, runDir: spec.RunDir, pid: h.lastPID, exited: make(chan struct{})}
	h.procs[spec.ID] = p
	return &VM{h: h, p: p, died: h.died}, nil
}

// Adopt records "hv adopt vmN" and returns a new handle to the VM's
// process, or an error when it is not running.
func (h *Hypervisor) Adopt(ctx context.Context, runDir, id string) (lab.VM, error) {
	if err := h.calls.call("hv adopt %s", vmName(id)); err != nil {
		return nil, fmt.Errorf("adopt vm %q: %w", id, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.procs[id]
	if p == nil || !p.alive() || p.runDir != runDir {
		return nil, fmt.Errorf("adopt vm %q: no QEMU process for it", id)
	}
	return &VM{h: h, p: p, died: h.died}, nil
}

// Restart makes the handles given so far dead, as their daemon is: a
// process that ends afterwards is noticed only by a daemon that adopts
// it. Waits on them block until their context ends.
func (h *Hypervisor) Restart() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.died)
	h.died = make(chan struct{})
}

// Crash ends the process of VM vmN as if QEMU died, without a call from
// the lab. It reports whether one was running.
func (h *Hypervisor) Crash(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, p := range h.procs {
		if vmName(id) == name && p.alive() {
			p.exit()
			return true
		}
	}
	return false
}

// Running lists the VMs whose process runs, as vmN, sorted.
func (h *Hypervisor) Running() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id, p := range h.procs {
		if p.alive() {
			out = append(out, vmName(id))
		}
	}
	sort.Strings(out)
	return out
}

// VM is a handle to a fake VM's process.
type VM struct {
	h    *Hypervisor
	p    *process
	died <-chan struct{} // closed when this handle's daemon died
}

var _ lab.VM = (*VM)(nil)

func (v *VM) call(what string) error {
	if err := v.h.calls.call("vm %s %s", what, vmName(v.p.id)); err != nil {
		return fmt.Errorf("%s vm %q: %w", what, v.p.id, err)
	}
	return nil
}

var errExited = errors.New("qemu exited")

func (v *VM) running(what string) error {
	if !v.p.alive() {
		return fmt.Errorf("%s vm %q: %w", what, v.p.id, errExited)
	}
	return nil
}

// Wait blocks until the process has exited or ctx ends (not recorded).
func (v *VM) Wait(ctx context.Context) error {
	select {
	case <-v.p.exited:
		select {
		case <-v.died: // a dead daemon's watcher sees nothing
		default:
			return nil
		}
	case <-v.died:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-ctx.Done()
	return ctx.Err()
}

// Close releases the handle (not recorded); the process runs on.
func (v *VM) Close() error { return nil }

// Kill records "vm kill vmN" and ends the process.
func (v *VM) Kill(ctx context.Context) error {
	if err := v.call("kill"); err != nil {
		return err
	}
	v.p.exit()
	return nil
}

// Shutdown records "vm shutdown vmN" and ends the process.
func (v *VM) Shutdown(ctx context.Context, timeout time.Duration) error {
	if err := v.call("shutdown"); err != nil {
		return err
	}
	v.p.exit()
	return nil
}

// PowerDown records "vm power-down vmN"; the guest powers itself off.
func (v *VM) PowerDown(ctx context.Context) error {
	if err := v.call("power-down"); err != nil {
		return err
	}
	if err := v.running("power down"); err != nil {
		return err
	}
	v.p.exit()
	return nil
}

// SaveState records "vm save-state vmN", writes a small state file and
// ends the process. On failure the guest runs on and no file is left.
func (v *VM) SaveState(ctx context.Context, file string) error {
	if err := v.call("save-state"); err != nil {
		return err
	}
	if err := v.running("save"); err != nil {
		return err
	}
	if err := os.WriteFile(file, []byte("labtest state of "+v.p.id+"\n"), 0o600); err != nil {
		return fmt.Errorf("save vm %q: %w", v.p.id, err)
	}
	v.p.exit()
	return nil
}

// Continue records "vm continue vmN".
func (v *VM) Continue(ctx context.Context) error {
	if err := v.call("continue"); err != nil {
		return err
	}
	return v.running("continue")
}

// Reset records "vm reset vmN".
func (v *VM) Reset(ctx context.Context) error {
	if err := v.call("reset"); err != nil {
		return err
	}
	return v.running("reset")
}

// PID is the fake process's ID.
func (v *VM) PID() int { return v.p.pid }

// ConsoleSocketPath is where QEMU would put the serial console's socket.
func (v *VM) ConsoleSocketPath() string {
	return hypervisor.Spec{RunDir: v.p.runDir}.ConsoleSocketPath()
}
