package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/ipam"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/archive"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/seed"
	"stagehand/internal/store"
)

// Archives: consolidated, read-only copies of configurations in the
// archive storage (Options.ArchiveDir, which may be another filesystem).
// An archive is not made of layers: each VM disk is one standalone,
// compressed qcow2 in the archive's own directory, with the template's boot
// files, described by a manifest (VMs, NICs, networks, template hardware,
// a sha256 per file) kept in the store and beside the files. Restoring is
// a full clone back into layers. Archives hold no addresses: the manifest
// records them, and a restore takes them again (see restoreNIC).
//
// Archived --with-snapshots, a configuration's snapshot tree travels too
// (manifest version 2): each disk is then a small tree of compressed
// files (a base, each snapshot's layer and the current top as deltas on
// the point below), restored as frozen layers of the same shape with the
// snapshot records (restoreSnapshots) and copies of the saved states, and
// so does each VM's current saved state (undeploy --save-state): the
// restored VM is saved and its next deploy resumes a copy of it. A restore
// of saved states keeps the archived MACs (keepMACs).
//
// Every archive file lives in its directory, which an operation journals
// as one entry (a path ending in a separator): a failure or a crash removes
// the whole directory, and deleting the archive removes it.
//
// Making, restoring, exporting, importing and deleting archives run in
// internal/lab/archive; the lab keeps how archives are shown (their lease
// is the lab's) and the records a restore writes (templates, layers,
// addresses, snapshots), which that package asks for through archiveLab.

// ArchiveView is an archive as shown to users.
type ArchiveView struct {
	Name        string
	Source      string
	Dir         string // absolute
	Description string
	// Owner is the owning user's name; for an archive without one, the
	// owner its configuration had.
	Owner     string
	Workspace string // see TemplateView
	Size      int64  // bytes of its files
	CreatedAt time.Time
	Networks  []string
	VMs       []ArchiveVMView
	// Snapshots is the configuration's snapshot tree when it was archived
	// with it (archive create --with-snapshots), in the order taken.
	Snapshots []ArchiveSnapshotView
	Lease     LeaseView
}

// ArchiveSnapshotView is one snapshot an archive carries.
type ArchiveSnapshotView struct {
	Name      string
	Parent    string // "" for a root
	CreatedAt time.Time
	WithState bool
	Size      int64 // bytes of its files in the archive (layers, states)
}

// ArchiveVMView is one VM of an archive.
type ArchiveVMView struct {
	Name      string
	Template  string
	CPUs      int
	MemoryMiB int
	Disks     []ArchiveDiskView
	NICs      []NICView
	// SavedState is true when the VM was archived saved (undeploy
	// --save-state, archive create --with-snapshots): its restore resumes
	// it. SavedStateSize is the bytes of that state in the archive.
	SavedState     bool
	SavedStateSize int64
}

// ArchiveDiskView is one disk of an archived VM.
type ArchiveDiskView struct {
	Index       int
	Path        string // absolute: the disk (with snapshots: its current top)
	VirtualSize int64
	Size        int64 // bytes of the compressed file
	SHA256      string
	// Backing is the archive file Path reads through (absolute; "" for a
	// standalone disk: archived without snapshots).
	Backing string
}

// syncDirs fsyncs each path (files or directories).
var syncDirs = archive.SyncPaths

func (vs views) archive(tx store.Tx, a *store.Archive) (*ArchiveView, error) {
	return vs.archiveNamed(tx, a, access.NewNames(tx))
}

func (vs views) archiveNamed(tx store.Tx, a *store.Archive, names *access.Names) (*ArchiveView, error) {
	m, err := bundle.Parse(a.Manifest)
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", a.Name, err)
	}
	dir := vs.archives.DirOf(a)
	v := &ArchiveView{Name: a.Name, Source: a.Source, Dir: dir, Description: m.Description, Owner: m.Owner, Size: a.Size, CreatedAt: a.CreatedAt}
	v.Workspace, v.Owner = owned(names, a.WorkspaceID, a.OwnerID, m.Owner)
	for _, n := range m.Networks {
		v.Networks = append(v.Networks, n.Name)
	}
	for _, vm := range m.VMs {
		vv := ArchiveVMView{Name: vm.Name, Template: vm.Template, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB}
		if vm.State != nil {
			vv.SavedState, vv.SavedStateSize = true, vm.State.Size
		}
		for _, d := range vm.Disks {
			dv := ArchiveDiskView{Index: d.Index, Path: filepath.Join(dir, d.File.Path), VirtualSize: d.VirtualSize, Size: d.File.Size, SHA256: d.File.SHA256}
			if d.File.Backing != "" {
				dv.Backing = filepath.Join(dir, d.File.Backing)
			}
			vv.Disks = append(vv.Disks, dv)
		}
		for _, n := range vm.NICs {
			vv.NICs = append(vv.NICs, NICView{Index: n.Index, Network: n.Network, MAC: n.MAC, IPMode: n.IPMode, IP: n.IP})
		}
		v.VMs = append(v.VMs, vv)
	}
	for _, sn := range m.Snapshots {
		sv := ArchiveSnapshotView{Name: sn.Name, Parent: sn.Parent, CreatedAt: sn.CreatedAt, WithState: sn.WithState}
		for _, d := range sn.Disks {
			sv.Size += d.File.Size
		}
		for _, st := range sn.States {
			sv.Size += st.File.Size
		}
		v.Snapshots = append(v.Snapshots, sv)
	}
	l, err := tx.Leases().OfArchive(a.ID)
	if err != nil {
		l = nil
	}
	v.Lease = vs.lease(l)
	return v, nil
}

// ListArchives returns the archives the caller may see.
func (s Archives) List(ctx context.Context) ([]ArchiveView, error) { return s.ListIn(ctx, "") }

// ListIn returns the archives the caller may see in workspace ("ws" or
// "org/ws"; "" every workspace).
func (s Archives) ListIn(ctx context.Context, workspace string) ([]ArchiveView, error) {
	sc, err := s.access.Scope(ctx, access.KindArchive)
	if err != nil {
		return nil, err
	}
	return viewIn(ctx, s.store, func(tx store.Tx) ([]ArchiveView, error) {
		as, err := listArchives(tx, sc)
		if err == nil {
			as, err = inWorkspace(tx, workspace, as, func(a *store.Archive) int64 { return a.WorkspaceID })
		}
		if err != nil {
			return nil, err
		}
		names := access.NewNames(tx)
		return viewsOf(as, func(a *store.Archive) (*ArchiveView, error) { return s.views.archiveNamed(tx, a, names) })
	})
}

// GetArchive returns one archive.
func (s Archives) Get(ctx context.Context, name string) (*ArchiveView, error) {
	return viewIn(ctx, s.store, func(tx store.Tx) (*ArchiveView, error) {
		a, err := tx.Archives().Get(name)
		if err != nil {
			return nil, err
		}
		return s.views.archive(tx, a)
	})
}

// StartArchive starts a job that copies an undeployed configuration (or
// library entry) into archive name (see archive.Archives.StartCreate). The
// archive gets its storage lease as opts says, and carries the
// configuration's snapshots and its VMs' saved states with
// opts.WithSnapshots.
//
// The archive goes to opts.Workspace, else the configuration's workspace
// (archive.create checked there), owned by the caller.
func (s Archives) StartCreate(ctx context.Context, config, name string, opts CreateOptions) (jobs.Job, error) {
	place, err := s.placer.placeFrom(ctx, auth.ArchiveCreate, access.KindArchive, opts.Workspace, func(tx store.Tx) (int64, error) {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return 0, err
		}
		return c.WorkspaceID, nil
	})
	if err != nil {
		return jobs.Job{}, fmt.Errorf("archive %q as %q: %w", config, name, err)
	}
	return s.archives.StartCreate(ctx, config, name, opts.StorageLease, place, opts.WithSnapshots)
}

// StartRestore starts a job that makes configuration config from an
// archive by full clone (see archive.Archives.StartRestore); the records
// are written by restoreRecords. The configuration gets its storage lease
// as opts says, and the archive is marked used.
//
// The configuration goes to opts.Workspace, else the archive's workspace
// (config.create checked there), owned by the caller, within quotas.
func (s Archives) StartRestore(ctx context.Context, archive, config string, opts CreateOptions) (jobs.Job, error) {
	place, err := s.placer.placeFrom(ctx, auth.ConfigCreate, access.KindConfig, opts.Workspace, func(tx store.Tx) (int64, error) {
		a, err := tx.Archives().Get(archive)
		if err != nil {
			return 0, err
		}
		return a.WorkspaceID, nil
	})
	if err != nil {
		return jobs.Job{}, fmt.Errorf("restore archive %q as %q: %w", archive, config, err)
	}
	return s.archives.StartRestore(ctx, archive, config, opts.StorageLease, place)
}

// restores owns the records an archive's restore writes: the
// configuration, its NICs, its lease and the archive marked used.
type restores struct{ *core }

// restoreRecords writes a restored configuration inside tx: commitRestore,
// the configuration's storage lease, and the archive marked used. It
// returns the boot file copies it did not need.
func (s restores) restoreRecords(tx store.Tx, m *bundle.Manifest, config string, archiveID int64, files archive.RestoreFiles, storageLease *time.Duration, place access.Placement) ([]string, error) {
	var diskBytes int64
	for _, vm := range m.VMs {
		for _, d := range vm.Disks {
			diskBytes += d.VirtualSize
		}
	}
	if err := storedQuota(tx, place, len(m.VMs), diskBytes); err != nil {
		return nil, err
	}
	c, unused, err := s.commitRestore(tx, m, config, files, place)
	if err != nil {
		return nil, err
	}
	if err := s.leases.started(tx, configLease(c.ID), storageLease); err != nil {
		return nil, err
	}
	// The archive is held by its lock, so it is still archiveID.
	if err := s.leases.used(tx, archiveLease(archiveID)); err != nil {
		return nil, err
	}
	return unused, nil
}

// commitRestore writes the restored configuration inside tx and returns
// it, and the boot file copies it did not need (their template exists).
// The configuration, and the templates made again, go where place says.
// An archive with snapshots gives each disk a layer per archived file
// (the base and the snapshots' layers frozen, each on the layer of its
// backing file, the current top writable on its own) and the
// configuration its snapshot records (restoreSnapshots).
func (s restores) commitRestore(tx store.Tx, m *bundle.Manifest, config string, files archive.RestoreFiles, place access.Placement) (*store.Config, []string, error) {
	bootCopies := files.Boot
	var unused []string
	templateIDs := map[string]int64{}
	for _, mt := range m.Templates {
		t, err := tx.Templates().Get(mt.Name)
		if err == nil {
			templateIDs[mt.Name] = t.ID
			for _, f := range []*bundle.File{mt.Kernel, mt.Initrd} {
				if f != nil {
					unused = append(unused, bootCopies[f.Path])
				}
			}
			continue
		}
		if !errors.Is(err, errdefs.ErrNotFound) {
			return nil, nil, err
		}
		nt := &store.Template{Name: mt.Name, Description: "made again from archive " + m.Name + " (hardware and boot files only)",
			CPUs: mt.CPUs, MemoryMiB: mt.MemoryMiB, Cmdline: mt.Cmdline, WorkspaceID: place.WorkspaceID, OwnerID: place.OwnerID}
		// The archive verified the copies against these hashes.
		if mt.Kernel != nil {
			nt.Kernel, nt.KernelSHA256, nt.KernelSize = bootCopies[mt.Kernel.Path], mt.Kernel.SHA256, mt.Kernel.Size
		}
		if mt.Initrd != nil {
			nt.Initrd, nt.InitrdSHA256, nt.InitrdSize = bootCopies[mt.Initrd.Path], mt.Initrd.SHA256, mt.Initrd.Size
		}
		if err := tx.Templates().Create(nt); err != nil {
			return nil, nil, err
		}
		templateIDs[mt.Name] = nt.ID
	}
	c := &store.Config{Name: config, Kind: store.KindConfig, Description: m.Description, Owner: m.Owner, State: store.StateUndeployed,
		WorkspaceID: place.WorkspaceID, OwnerID: place.OwnerID, Host: s.hostName}
	keepMACs, err := s.keepMACs(tx, m, c)
	if err != nil {
		return nil, nil, err
	}
	layerIDs := map[string]int64{} // archive file → its new layer
	for vi, mv := range m.VMs {
		tid, ok := templateIDs[mv.Template]
		if !ok {
			return nil, nil, fmt.Errorf("VM %q: template %q is not in the manifest", mv.Name, mv.Template)
		}
		// A restore is a copy of what was archived: a new instance-id. A
		// VM archived saved is saved (its state goes in place once
		// committed: archive.Lab.PlaceSavedStates).
		vm := store.VM{Name: mv.Name, TemplateID: tid, CPUs: mv.CPUs, MemoryMiB: mv.MemoryMiB, State: store.StateUndeployed,
			InstanceID: seed.NewInstanceID()}
		if mv.State != nil {
			vm.State = VMStateSaved
		}
		for j, d := range mv.Disks {
			current := &m.VMs[vi].Disks[j].File
			for _, f := range m.DiskFiles(vi, j) { // a backing file before its children
				l := &store.Layer{Path: files.Layers[f.Path], ParentID: layerIDs[f.Backing], Frozen: f != current, VirtualSize: d.VirtualSize}
				h, hashed := files.Hashes[f.Path]
				if l.Frozen && hashed {
					l.SHA256, l.Size = h.SHA256, h.Size
				}
				if err := tx.Layers().Create(l); err != nil {
					return nil, nil, err
				}
				if l.SHA256 != "" {
					if err := s.recordHeld(tx, l.ID); err != nil {
						return nil, nil, err
					}
				}
				layerIDs[f.Path] = l.ID
			}
			vm.Disks = append(vm.Disks, store.Disk{Index: d.Index, TopLayerID: layerIDs[current.Path]})
		}
		for _, mn := range mv.NICs {
			mac := newMAC()
			if keepMACs && mn.MAC != "" {
				mac = mn.MAC
			}
			n, err := s.restoreNIC(tx, mn, mac)
			if err != nil {
				return nil, nil, fmt.Errorf("VM %q NIC %d: %w", mv.Name, mn.Index, err)
			}
			vm.NICs = append(vm.NICs, n)
		}
		c.VMs = append(c.VMs, vm)
	}
	if err := tx.Configs().Create(c); err != nil {
		return nil, nil, err
	}
	if err := restoreSnapshots(tx, m, c, files, layerIDs); err != nil {
		return nil, nil, err
	}
	return c, unused, nil
}

// restoreSnapshots writes, inside tx, the snapshot records of the
// restored configuration c from m's tree (a parent before its children),
// naming the layers made from their files (layerIDs) and the copies of
// their states.
func restoreSnapshots(tx store.Tx, m *bundle.Manifest, c *store.Config, files archive.RestoreFiles, layerIDs map[string]int64) error {
	vmIDs := map[string]int64{}
	for _, v := range c.VMs {
		vmIDs[v.Name] = v.ID
	}
	snapIDs := map[string]int64{}
	for _, ms := range m.Snapshots {
		sn := &store.Snapshot{ConfigID: c.ID, ParentID: snapIDs[ms.Parent], Name: ms.Name, CreatedAt: ms.CreatedAt, WithState: ms.WithState}
		for _, sd := range ms.Disks {
			sn.Disks = append(sn.Disks, store.SnapshotDisk{VMID: vmIDs[sd.VM], Index: sd.Index, LayerID: layerIDs[sd.File.Path]})
		}
		for _, st := range ms.States {
			sn.States = append(sn.States, store.SnapshotState{VMID: vmIDs[st.VM], Path: files.States[st.File.Path]})
		}
		if err := tx.Snapshots().Create(sn); err != nil {
			return fmt.Errorf("snapshot %q: %w", ms.Name, err)
		}
		snapIDs[ms.Name] = sn.ID
	}
	return nil
}

// keepMACs says whether the restored configuration c keeps the archived
// MACs: it does when a snapshot or a VM has a saved state, since a guest
// resumed from it has its MACs (and addresses) in memory. When one of them is in
// use here (the archived configuration, or a copy, still exists), c is
// marked a copy of the archive's source sharing its state (InstantOf):
// like an instant copy it repeats those MACs and deploys fenced only.
func (s restores) keepMACs(tx store.Tx, m *bundle.Manifest, c *store.Config) (bool, error) {
	withState := m.SavedVMs() > 0
	for _, sn := range m.Snapshots {
		withState = withState || sn.WithState
	}
	if !withState {
		return false, nil
	}
	cs, err := tx.Configs().List()
	if err != nil {
		return false, err
	}
	inUse := map[string]bool{}
	for _, o := range cs {
		for _, v := range o.VMs {
			for _, n := range v.NICs {
				inUse[strings.ToLower(n.MAC)] = true
			}
		}
	}
	for _, vm := range m.VMs {
		for _, n := range vm.NICs {
			if n.MAC != "" && inUse[strings.ToLower(n.MAC)] {
				c.InstantOf = m.Source
				if c.InstantOf == "" {
					c.InstantOf = m.Name
				}
				return true, nil
			}
		}
	}
	return true, nil
}

// restoreNIC gives a restored NIC its network, IP mode and, where it can,
// its address: an address whose family still exists on this server is
// joined (the restored VM is a copy of that VM, like a clone); a free
// address inside the network is taken again. An address that cannot be
// kept (outside the subnet after a network mapping, or held as a fence's
// external address) is replaced by a new pool address for a pool NIC and
// cleared for a manual one (set it with config set-ip). It gets MAC mac.
func (s restores) restoreNIC(tx store.Tx, mn bundle.NIC, mac string) (store.NIC, error) {
	nw, err := tx.Networks().Get(mn.Network)
	if err != nil {
		return store.NIC{}, err
	}
	n := store.NIC{Index: mn.Index, NetworkID: nw.ID, MAC: mac, IPMode: mn.IPMode}
	switch mn.IPMode {
	case store.IPModePool, store.IPModeManual:
	case store.IPModeDHCP:
		return n, nil
	default:
		return store.NIC{}, errdefs.Invalid("IP mode %q is not pool, manual or dhcp", mn.IPMode)
	}
	if mn.IP != "" {
		ip, err := netip.ParseAddr(mn.IP)
		if err != nil {
			return store.NIC{}, errdefs.Invalid("address %q: %v", mn.IP, err)
		}
		allocs, err := tx.Allocations().List(nw.ID)
		if err != nil {
			return store.NIC{}, err
		}
		held := false
		for _, a := range allocs {
			if a.IP == ip {
				held = true
				if a.Kind == store.AllocInternal {
					n.IP, n.AllocationID = a.IP, a.ID
					return n, nil
				}
			}
		}
		if !held && ipam.CheckManual(nw, ip) == nil {
			a := &store.Allocation{NetworkID: nw.ID, IP: ip, Kind: store.AllocInternal}
			if err := tx.Allocations().Create(a); err != nil {
				return store.NIC{}, err
			}
			n.IP, n.AllocationID = a.IP, a.ID
			return n, nil
		}
	}
	if mn.IPMode == store.IPModePool {
		a, err := s.alloc.Allocate(tx, nw, store.AllocInternal, "", netip.Addr{})
		if err != nil {
			return store.NIC{}, err
		}
		n.IP, n.AllocationID = a.IP, a.ID
	}
	return n, nil
}
