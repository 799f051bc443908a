// Package lab is the domain of Stagehand: templates, networks,
// configurations and clones, the library, archives, leases and
// deployments, one type per resource over one shared core that owns the
// rules of DOMAIN.md; the concerns that grew are packages below it
// (journal, deploy, archive, bundle, lease, events, doctor).
package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"stagehand/internal/hypervisor"
	"stagehand/internal/ipam"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/archive"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/doctor"
	"stagehand/internal/lab/events"
	"stagehand/internal/lab/journal"
	"stagehand/internal/lab/lease"
	"stagehand/internal/store"
	"stagehand/internal/webhook"
)

// DefaultChainLimit is the deepest chain a linked clone may produce.
const DefaultChainLimit = 30

// Options configure a Service.
type Options struct {
	DataDir    string // holds layers/, templates/ and the daemon's files
	Store      store.Store
	Disks      DiskTool
	Jobs       *jobs.Manager
	ChainLimit int // 0 means DefaultChainLimit
	Logger     *slog.Logger
	// Hypervisor, Segments and Fences run deployments; without them
	// Deploy is unavailable (the lab still manages disks and addresses).
	Hypervisor Hypervisor
	Segments   Segments
	Fences     Fences
	// Accel chooses the accelerator for VMs; a deploy waits until it has
	// chosen. Nil means TCG.
	Accel Accelerator
	// ShutdownTimeout bounds the ACPI power-off of a VM at undeploy before
	// it is forced off (default 20s).
	ShutdownTimeout time.Duration
	// FailAt, when set, is called before every step of every multi-step
	// operation; a non-nil error fails that step. Tests use it to prove
	// that each step rolls back.
	FailAt func(op, step string) error
	// Now is the clock of leases and events (default time.Now).
	Now func() time.Time
	// ArchiveDir holds the archives (default DATA/archive); it may be on
	// another filesystem.
	ArchiveDir string
	// Leases are the lease defaults and the reaper's policy.
	Leases LeasePolicy
	// Webhooks posts the lease ladders' steps to their webhooks (default:
	// a webhook.Sender, reaching loopback addresses only with
	// Leases.WebhookAllowLoopback).
	Webhooks lease.Notifier
	// ImportDirs are the directories (serve --import-dir) under which the
	// system administrator, on the unix socket, may name files on the
	// daemon's host to import; nobody else ever may (see sources.go).
	// Their symbolic links are resolved once, by New.
	ImportDirs []string
	// MaxUpload bounds each file a caller uploads (default
	// DefaultMaxUpload).
	MaxUpload int64
	// HostName is this daemon's host, recorded on what it deploys.
	HostName string
	// HostLink reaches the other hosts sharing the store (pulls, moves);
	// nil on one host (SQLite), where a deploy never leaves it.
	HostLink HostLink
	// SharedLayers (serve --shared-layers): DATA/layers is one directory
	// every host mounts, so every host holds every layer; nothing is
	// pulled, and a move changes only the record.
	SharedLayers bool
	// ShortcutDepth (serve --shortcut-depth) is the physical chain depth
	// above which the daemon's background pass builds a shortcut layer
	// (shortcut.go); 0 turns the pass off (disk shortcut still runs it,
	// at DefaultShortcutDepth).
	ShortcutDepth int
}

// Accelerator is the choice of accelerator for VMs. The daemon probes it in
// the background, so it may still be undecided when a deploy arrives.
// *hypervisor.Accelerator is the real one.
type Accelerator interface {
	// Status returns the choice, or that it is still being probed.
	Status() hypervisor.AccelStatus
	// Wait returns the choice once it is made, or ctx's error.
	Wait(ctx context.Context) (hypervisor.AccelStatus, error)
}

// Service is the lab: one type per resource, all over one shared core. It
// is safe for concurrent use.
type Service struct {
	*core
	Templates   Templates
	Networks    Networks
	Configs     Configs
	Deployments Deployments
	Library     Library
	Archives    Archives
	Leases      Leases
	Snapshots   Snapshots
	Shortcuts   Shortcuts
	Uploads     Uploads
	Events      *events.Log // the events: listed, followed, pruned
	// EventReader is the event log as each caller reads it: the events
	// they may see (access.Checker.EventFilter).
	EventReader *events.Reader
	// Access decides who may do what (the api checks every route with
	// it); the lab uses it to place new objects and filter lists.
	Access *access.Checker
}

// The resources of the lab. Each is a view of the shared core; their
// zero values are not usable (they come from New).
type (
	// Templates imports, lists, shows and deletes templates.
	Templates struct{ *core }
	// Networks creates, lists, shows and deletes networks, and hands out
	// the addresses of configurations' NICs.
	Networks struct{ *core }
	// Configs creates, lists, shows, deletes and clones configurations,
	// and shows and consolidates their disks' chains.
	Configs struct{ *core }
	// Deployments deploys and undeploys configurations and acts on their
	// VMs (run by internal/lab/deploy).
	Deployments struct{ *core }
	// Library captures configurations into read-only entries and checks
	// them out.
	Library struct{ *core }
	// Archives makes, restores, exports, imports and deletes archives.
	Archives struct{ *core }
	// Leases changes leases, reaps what they let go and shows the cleanup
	// view.
	Leases struct{ *core }
	// Snapshots takes, lists, reverts and deletes the snapshots of
	// configurations (snapshots.go).
	Snapshots struct{ *core }
)

// core is the state every resource shares: store, disks, locks, allocator,
// journal, event recorder, clock and the sub-packages that do the work.
type core struct {
	dataDir    string
	store      store.Store
	disks      DiskTool
	jobs       *jobs.Manager
	chainLimit int
	log        *slog.Logger
	journal    *journal.Journal // the intent of every file-touching operation
	locks      keyedLocks

	accel    Accelerator
	alloc    *ipam.Allocator
	deploys  *deploy.Deployments // deployments, their VMs and fences
	life     *lifecycle          // archives, leases and the reaper
	leases   leaseKeeper         // the leases operations start and end
	events   recorder            // what operations tell the event log
	eventLog *events.Log         // the events: listed, followed, pruned
	doctor   *doctor.Doctor      // one run at a time; layers that passed
	archives *archive.Archives   // making, exporting, importing, deleting
	access   *access.Checker     // placement of new objects, filtered lists
	views    views               // what users see of the records
	placer   placer              // where the objects callers make go

	hostName     string   // Options.HostName: this host, a configuration's home
	link         HostLink // Options.HostLink
	sharedLayers bool     // Options.SharedLayers
	// shortcutDepth is Options.ShortcutDepth.
	shortcutDepth int

	importDirs  []string // Options.ImportDirs, resolved
	importNames []string // the same, as given (absolute) and resolved
	maxUpload   int64
}

// update runs fn in a store transaction. When it does not commit, the
// allocator's cache may hold addresses the transaction took or released,
// so it is dropped (reloaded on the next allocation).
func (s *core) update(ctx context.Context, fn func(store.Tx) error) error {
	err := s.store.Update(ctx, fn)
	if err != nil {
		s.alloc.Forget()
	}
	return err
}

// New returns a Service over opts. Call Recover before serving requests.
func New(opts Options) (*Service, error) {
	if opts.DataDir == "" || opts.Store == nil || opts.Disks == nil {
		return nil, fmt.Errorf("lab: DataDir, Store and Disks are required")
	}
	abs, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("lab: data dir: %w", err)
	}
	for _, d := range []string{layersDir, filesDir, uploadsDir} {
		if err := makePrivateDir(filepath.Join(abs, d)); err != nil {
			return nil, fmt.Errorf("lab: create %s: %w", d, err)
		}
	}
	s := &core{
		dataDir:    abs,
		store:      opts.Store,
		disks:      opts.Disks,
		jobs:       opts.Jobs,
		chainLimit: opts.ChainLimit,
		log:        opts.Logger,
		maxUpload:  opts.MaxUpload,

		hostName:     opts.HostName,
		link:         opts.HostLink,
		sharedLayers: opts.SharedLayers,

		shortcutDepth: opts.ShortcutDepth,
	}
	if s.maxUpload <= 0 {
		s.maxUpload = DefaultMaxUpload
	}
	if s.importDirs, s.importNames, err = resolveImportDirs(opts.ImportDirs); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	s.alloc = ipam.NewAllocator()
	if s.life, err = newLifecycle(opts, abs); err != nil {
		return nil, err
	}
	s.accel = opts.Accel
	if s.accel == nil {
		s.accel = hypervisor.FixedAccelerator(hypervisor.AccelTCG, "default")
	}
	shutdownTimeout := opts.ShutdownTimeout
	if shutdownTimeout <= 0 {
		shutdownTimeout = 20 * time.Second
	}
	sum := sha256.Sum256([]byte(abs))
	for _, d := range []string{runDir, stateDir} {
		if err := makePrivateDir(filepath.Join(abs, d)); err != nil {
			return nil, fmt.Errorf("lab: create %s: %w", d, err)
		}
	}
	if s.chainLimit <= 0 {
		s.chainLimit = DefaultChainLimit
	}
	if s.jobs == nil {
		s.jobs = jobs.NewManager()
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.access = access.New(s.store, s.log).WithJobs(s.jobs)
	s.placer = placer{store: s.store, access: s.access}
	s.journal = journal.New(journal.Config{
		Store: s.store, Disks: s.disks, DataDir: s.dataDir, Host: s.hostName, Log: s.log, FailAt: opts.FailAt,
		// s.events is set below: read it when an operation fails.
		OnFailure: func(ctx context.Context, op *store.Op, err error) { s.events.recordOpFailure(ctx, op, err) },
	})
	s.leases = s.life.book
	s.life.reaper = lease.NewReaper(reaperLab{s}, s.life.policy, s.now, s.log)
	if opts.Webhooks == nil {
		opts.Webhooks = webhook.New(webhook.Options{AllowLoopback: s.life.policy.WebhookAllowLoopback}, s.log)
	}
	s.life.reaper.SetNotifier(opts.Webhooks)
	s.eventLog = events.New(s.store, s.life.now, s.log)
	s.events = recorder{s.eventLog}
	s.doctor = doctor.New(doctor.Config{
		Store: s.store, Disks: s.disks, Lab: doctorLab{s},
		DataDir: s.dataDir, FileDirs: []string{layersDir, filesDir}, ArchiveDir: s.life.archiveDir,
		StateDir: deploy.StateDir, SnapshotDir: snapshotsDir,
		Log: s.log, Elsewhere: moves{s}.layersElsewhere(), Host: s.hostName,
	})
	s.archives = archive.New(archive.Config{
		Store: s.store, Disks: s.disks, Jobs: s.jobs, Dir: s.life.archiveDir,
		DataDir: s.dataDir, Now: s.life.now, Lab: archiveLab{s}, Log: s.log,
	})
	s.deploys = deploy.New(deploy.Config{
		Store: s.store, Lab: deployLab{s}, Alloc: s.alloc,
		Hypervisor: opts.Hypervisor, Segments: opts.Segments, Fences: opts.Fences, Members: spreadMembers{s},
		DataDir: abs, HostKey: hex.EncodeToString(sum[:4]), HostName: opts.HostName, ShutdownTimeout: shutdownTimeout, Log: s.log,
	})
	s.views = views{dataDir: s.dataDir, leases: s.leases, policy: s.life.policy, archives: s.archives, deploys: s.deploys, self: s.hostName}
	return &Service{
		core: s, Templates: Templates{s}, Networks: Networks{s}, Configs: Configs{s},
		Deployments: Deployments{s}, Library: Library{s}, Archives: Archives{s}, Leases: Leases{s}, Snapshots: Snapshots{s}, Shortcuts: Shortcuts{s},
		Uploads: Uploads{s}, Events: s.eventLog, EventReader: s.eventLog.Reader(s.access.EventFilter), Access: s.access,
	}, nil
}

// makePrivateDir creates dir, or makes an existing one (from an older
// version) 0700: it holds guest disks, boot files, saved memory and
// sockets, which no other local user may read.
func makePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// Jobs returns the job manager (GET/cancel/wait of background operations).
func (s *Service) Jobs() *jobs.Manager { return s.jobs }

// ChainLimit returns the configured chain limit.
func (s *Service) ChainLimit() int { return s.chainLimit }

// Directory layout inside the data dir.
const (
	layersDir = "layers" // every qcow2 layer, flat, so backing files are relative names
	filesDir  = "files"  // template kernels and initrds
	runDir    = deploy.RunDir
	stateDir  = deploy.StateDir
)

// keyedLocks serialises work per key (a configuration name) while different
// keys proceed in parallel.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

// busy reports whether key is locked or waited for.
func (k *keyedLocks) busy(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.locks[key]
	return ok
}

// lock takes the locks of keys in sorted order (no deadlock between two
// callers taking overlapping sets) and returns the function that releases them.
func (k *keyedLocks) lock(keys ...string) func() {
	keys = sortedUnique(keys)
	held := make([]*keyedLock, 0, len(keys))
	for _, key := range keys {
		k.mu.Lock()
		if k.locks == nil {
			k.locks = map[string]*keyedLock{}
		}
		l := k.locks[key]
		if l == nil {
			l = &keyedLock{}
			k.locks[key] = l
		}
		l.refs++
		k.mu.Unlock()
		l.mu.Lock()
		held = append(held, l)
	}
	return func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].mu.Unlock()
			k.mu.Lock()
			held[i].refs--
			if held[i].refs == 0 {
				delete(k.locks, keys[i])
			}
			k.mu.Unlock()
		}
	}
}

// FaultHook parses a fault specification for Options.FailAt (see
// journal.FaultHook).
var FaultHook = journal.FaultHook

// Recover finishes or rolls back every operation a previous run left in the
// journal, then finishes interrupted deployments. Call it once at start,
// before serving.
func (s *Service) Recover(ctx context.Context) error {
	err := moves{s.core}.recoverMoves(ctx)
	err = errors.Join(err, s.journal.Recover(ctx))
	if derr := s.deploys.Recover(ctx); derr != nil {
		err = errors.Join(err, fmt.Errorf("recover deployments: %w", derr))
	}
	return err
}
