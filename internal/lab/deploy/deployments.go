// Package deploy runs a lab's deployments: it deploys and undeploys
// configurations as QEMU processes on segments or inside fences, drives
// their VMs and their consoles (Consoles), and re-adopts them after a
// daemon restart.
package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/fence"
	"stagehand/internal/ipam"
	"stagehand/internal/lab/events"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Directories of a deployment's files inside the data dir.
const (
	RunDir   = "run"   // per-VM QEMU run directories (sockets, pidfile, logs)
	StateDir = "state" // saved VM states
)

// ObjectConfig is the object of the events deployments record.
const ObjectConfig = "config"

// Lab is what deployments ask of the lab they belong to: its store
// transactions, its per-configuration locks and rules, the accelerator
// probe, the fault hook and the event log.
type Lab interface {
	// Update runs fn in one store transaction (the lab's own, which keeps
	// its address cache true when the transaction does not commit).
	Update(ctx context.Context, fn func(store.Tx) error) error
	// Lock takes the configuration's lock and returns its release.
	Lock(name string) (unlock func())
	// WaitAccel returns the accelerator VMs start with, waiting for the
	// probe while it runs.
	WaitAccel(ctx context.Context, what, name string) (string, error)
	// Fault is called before every named step: it fails the step when
	// ctx is done or a test chose it.
	Fault(ctx context.Context, op, step string) error
	// Deployable refuses what is not a configuration (a library entry).
	Deployable(c *store.Config) error
	// Record appends an event once the operation is done.
	Record(ctx context.Context, e events.Event)
}

// Config is what a Deployments runs on.
type Config struct {
	Store store.Store
	Lab   Lab
	// Alloc hands out the external addresses of fenced deployments.
	Alloc *ipam.Allocator
	// Hypervisor, Segments and Fences are the runtime; without them
	// every operation but re-adoption is unavailable.
	Hypervisor Hypervisor
	Segments   Segments
	Fences     Fences
	DataDir    string // absolute
	// HostKey distinguishes this data dir's VMs, taps and fences on the host.
	HostKey string
	// HostName is this daemon's host (cluster.Member), recorded on each
	// configuration it deploys (store.Config.Host).
	HostName string
	// Members starts and stops the parts of a spread deployment on its
	// other hosts (spread.go); nil: no other host is reachable.
	Members Members
	// ShutdownTimeout bounds the ACPI power-off of a VM at undeploy.
	ShutdownTimeout time.Duration
	Log             *slog.Logger
}

// Deployments are the running deployments of one lab. Safe for
// concurrent use.
type Deployments struct {
	store           store.Store
	lab             Lab
	external        externalAddrs
	hv              Hypervisor
	segs            Segments
	fences          Fences
	members         Members
	host            hostNames
	hostName        string
	shutdownTimeout time.Duration
	log             *slog.Logger
	vms             runningVMs
	consoles        *Consoles
	egress          egressReports
}

// New returns the deployments of cfg.
func New(cfg Config) *Deployments {
	d := &Deployments{
		store: cfg.Store, lab: cfg.Lab, external: externalAddrs{alloc: cfg.Alloc},
		hv: cfg.Hypervisor, segs: cfg.Segments, fences: cfg.Fences, members: cfg.Members,
		host: hostNames{key: cfg.HostKey, dataDir: cfg.DataDir}, hostName: cfg.HostName, shutdownTimeout: cfg.ShutdownTimeout, log: cfg.Log,
	}
	d.consoles = &Consoles{store: d.store, vms: &d.vms, host: d.host, hostName: d.hostName, log: d.log}
	return d
}

// Consoles returns the consoles and screens of the deployments' VMs.
func (d *Deployments) Consoles() *Consoles { return d.consoles }

// ResumedMark is in the name of a state file a VM resumed from while its
// bytes are freed (discardResumed): no VM refers to it any more.
const ResumedMark = ".resumed-"

// StateFile is the data-dir-relative path of VM id's saved state.
func StateFile(id int64) string { return filepath.Join(StateDir, fmt.Sprintf("vm-%d.state", id)) }

// VMRunDir is the run directory of VM id (sockets, pidfile, console log).
func (d *Deployments) VMRunDir(id int64) string { return d.host.runDir(id) }

// PID is the process ID of VM id, or 0 when it does not run.
func (d *Deployments) PID(id int64) int {
	if rv := d.vms.get(id); rv != nil {
		return rv.vm.PID()
	}
	return 0
}

// Running counts the VMs running under this daemon.
func (d *Deployments) Running() int {
	d.vms.mu.Lock()
	defer d.vms.mu.Unlock()
	return len(d.vms.m)
}

// hostNames names this data dir's files, VMs, taps and fences on the host.
type hostNames struct {
	key     string // distinguishes this data dir's VMs, taps and fences
	dataDir string // absolute
}

// vm is the hypervisor's ID of VM id.
func (h hostNames) vm(id int64) string { return fmt.Sprintf("sh-%s-vm%d", h.key, id) }

// tap is the tap device of NIC nicID.
func (h hostNames) tap(nicID int64) string {
	return fence.TapName(fmt.Sprintf("%s/nic-%d", h.key, nicID))
}

// fence names the fence of configuration id.
func (h hostNames) fence(configID int64) string { return fmt.Sprintf("%s-c%d", h.key, configID) }

// abs turns a data-dir-relative path into an absolute one.
func (h hostNames) abs(rel string) string { return journal.Abs(h.dataDir, rel) }

// runDir is the run directory of VM id.
func (h hostNames) runDir(id int64) string {
	return filepath.Join(h.dataDir, RunDir, fmt.Sprintf("vm-%d", id))
}

func (d *Deployments) requireRuntime(what, name string) error {
	if d.hv == nil || d.segs == nil || d.fences == nil {
		return errdefs.Unavailable("%s %q: this daemon runs without a hypervisor and network plumbing", what, name)
	}
	return nil
}

func (d *Deployments) record(ctx context.Context, action, subject, detail string) {
	d.lab.Record(ctx, events.Event{Object: ObjectConfig, Action: action, Subject: subject, Result: events.ResultOK, Detail: detail})
}

func (d *Deployments) recordFailure(ctx context.Context, action, subject string, err error) {
	d.lab.Record(ctx, events.Event{Object: ObjectConfig, Action: action, Subject: subject, Result: events.ResultFailed, Detail: err.Error()})
}

// HasSavedState reports whether the VM has a saved state that its next
// start resumes.
func (d *Deployments) HasSavedState(vmID int64) bool {
	return fileExists(d.host.abs(StateFile(vmID)))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Options are the options of Deploy.
type Options struct {
	Fenced      bool
	FencePolicy string // "block", "out" or "in-out" (default)
	// Allow is the egress allow-list (fence.ParseAllow entries), fenced
	// out or in-out only; see egress.go.
	Allow []string
	// Commit runs inside the transaction that marks the configuration
	// deployed, after its VMs: the lab writes the deployment's lease there.
	Commit func(tx store.Tx, c *store.Config) error
	// Admit, when set, runs inside the transaction that marks the
	// configuration deploying, before anything starts: the lab checks
	// quotas there, so two deploys cannot both take the last room.
	Admit func(tx store.Tx, c *store.Config) error
}

// VM actions of VMAction.
const (
	VMActionStop  = "stop"  // ACPI power-off request; the guest shuts down
	VMActionStart = "start" // start a stopped VM (or continue a paused one)
	VMActionReset = "reset" // hard reset
)

// VM states beyond the configuration states.
const (
	VMStateRunning = "running"
	VMStateStopped = "stopped" // powered off while its configuration is deployed
	VMStateSaved   = "saved"   // suspended to a state file; the next deploy resumes it
)

func deployDetail(opts Options) string {
	if opts.Fenced {
		if len(opts.Allow) > 0 {
			return "fenced, policy " + opts.FencePolicy + ", allow " + strings.Join(opts.Allow, ", ")
		}
		return "fenced, policy " + opts.FencePolicy
	}
	return "unfenced"
}

func undeployDetail(saveState bool) string {
	if saveState {
		return "state saved"
	}
	return "state discarded"
}
