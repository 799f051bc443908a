// Package bundle owns the on-disk and export format of an archive: its
// manifest and the checks of its shape, and the bundle, one tar file
// carrying it, written and read with checksums and bounds on every entry.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path"
	"regexp"
	"time"
)

// Format and Version identify the manifest. An archive that carries
// snapshots or a VM's saved state is VersionSnapshots; every other one is
// Version, byte for byte what it was before snapshots travelled.
const (
	Format           = "stagehand-archive"
	Version          = 1
	VersionSnapshots = 2
)

// Manifest describes an archive; it is the manifest.json of a bundle and
// of an archive directory.
//
// Version 2 adds the configuration's snapshot tree. Each VM disk is then a
// small tree of qcow2 files, all in disks/: Disk.Base, the part of the
// chain below the oldest snapshot point (standalone), each snapshot's
// frozen layer (SnapshotDisk.File) and the disk's current top (Disk.File),
// each a delta whose File.Backing names the archive file it reads through
// (its qcow2 header records that file's base name), or standalone.
//
// Version 2 also carries the current saved state of each VM that was
// saved when archived (config undeploy --save-state): VM.State, in
// states/, valid only with that VM's current tops (Disk.File) as
// archived. A configuration with saved VMs and no snapshots is version 2
// too.
type Manifest struct {
	Format      string     `json:"format"`
	Version     int        `json:"version"`
	Name        string     `json:"name"`
	Source      string     `json:"source"`
	Description string     `json:"description"`
	Owner       string     `json:"owner"`
	CreatedAt   time.Time  `json:"created_at"`
	Networks    []Network  `json:"networks"`
	Templates   []Template `json:"templates"`
	VMs         []VM       `json:"vms"`
	// Snapshots, version 2 only, in the order they were taken (a parent
	// before its children).
	Snapshots []Snapshot `json:"snapshots,omitempty"`
}

// Snapshot is one snapshot of the archived configuration.
type Snapshot struct {
	Name      string    `json:"name"`
	Parent    string    `json:"parent"` // "" for a root
	CreatedAt time.Time `json:"created_at"`
	WithState bool      `json:"with_state"`
	// Disks are the snapshot's layers, one per VM disk.
	Disks []SnapshotDisk `json:"disks"`
	// States are the VMs' saved memory and device states (WithState).
	States []SnapshotState `json:"states,omitempty"`
}

// SnapshotDisk is disk Index of VM VM as it was at the snapshot.
type SnapshotDisk struct {
	VM    string `json:"vm"`
	Index int    `json:"index"`
	File  File   `json:"file"`
}

// SnapshotState is VM VM's saved state at the snapshot: only valid with
// exactly the snapshot's disks.
type SnapshotState struct {
	VM   string `json:"vm"`
	File File   `json:"file"`
}

// Network is a network the archive's NICs are on.
type Network struct {
	Name    string   `json:"name"`
	Subnet  string   `json:"subnet"`
	Gateway string   `json:"gateway"`
	DNS     []string `json:"dns"`
	Pools   []string `json:"pools"`
}

// Template is the hardware and boot files of a template the VMs use.
type Template struct {
	Name      string `json:"name"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	Kernel    *File  `json:"kernel,omitempty"`
	Initrd    *File  `json:"initrd,omitempty"`
	Cmdline   string `json:"cmdline"`
}

// File is one file of the archive: Path is relative to the archive's
// directory and is the file's name in a bundle.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Backing (version 2, disk files only) is the Path of the archive
	// file this qcow2 delta reads through; "" for a standalone one.
	Backing string `json:"backing,omitempty"`
}

// VM is one archived VM.
type VM struct {
	Name      string `json:"name"`
	Template  string `json:"template"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	Disks     []Disk `json:"disks"`
	NICs      []NIC  `json:"nics"`
	// State (version 2 only) is the VM's saved memory and device state
	// when it was archived saved: valid only with its current tops as
	// archived; the restored VM is saved and its next deploy resumes it.
	State *File `json:"state,omitempty"`
}

// Disk is one disk of a VM: a standalone qcow2 file (version 1), or its
// current top (version 2: see Manifest).
type Disk struct {
	Index       int   `json:"index"`
	VirtualSize int64 `json:"virtual_size"`
	File        File  `json:"file"`
	// Base (version 2) is the standalone part of the chain the snapshot
	// layers are deltas on; nil when the oldest point is standalone.
	Base *File `json:"base,omitempty"`
}

// NIC is one NIC of a VM, with the address it had.
type NIC struct {
	Index   int    `json:"index"`
	Network string `json:"network"`
	MAC     string `json:"mac"`
	IPMode  string `json:"ip_mode"`
	IP      string `json:"ip"`
}

// ManifestName is the manifest's name in a bundle and in an archive
// directory.
const ManifestName = "manifest.json"

// Files lists every file of the archive in bundle order: disks (each
// disk's base, its snapshot layers in snapshot order, its current top),
// then boot files, then snapshot states, then the VMs' saved states. A
// disk file's backing comes before it (Check).
func (m *Manifest) Files() []*File {
	var out []*File
	for i := range m.VMs {
		for j := range m.VMs[i].Disks {
			out = append(out, m.DiskFiles(i, j)...)
		}
	}
	for i := range m.Templates {
		for _, f := range []*File{m.Templates[i].Kernel, m.Templates[i].Initrd} {
			if f != nil {
				out = append(out, f)
			}
		}
	}
	for i := range m.Snapshots {
		for j := range m.Snapshots[i].States {
			out = append(out, &m.Snapshots[i].States[j].File)
		}
	}
	for i := range m.VMs {
		if m.VMs[i].State != nil {
			out = append(out, m.VMs[i].State)
		}
	}
	return out
}

// SavedVMs counts the VMs that carry a saved state.
func (m *Manifest) SavedVMs() int {
	n := 0
	for _, vm := range m.VMs {
		if vm.State != nil {
			n++
		}
	}
	return n
}

// DiskFiles lists the files of disk j of VM i, bases first: its base,
// its layer in each snapshot (in snapshot order), its current top.
func (m *Manifest) DiskFiles(i, j int) []*File {
	vm, d := &m.VMs[i], &m.VMs[i].Disks[j]
	var out []*File
	if d.Base != nil {
		out = append(out, d.Base)
	}
	for k := range m.Snapshots {
		for l := range m.Snapshots[k].Disks {
			if sd := &m.Snapshots[k].Disks[l]; sd.VM == vm.Name && sd.Index == d.Index {
				out = append(out, &sd.File)
			}
		}
	}
	return append(out, &d.File)
}

// Size is the bytes of every file of the archive.
func (m *Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files() {
		n += f.Size
	}
	return n
}

// Parse decodes a manifest the lab wrote itself (the store's copy); one
// from outside goes through ParseHead.
func Parse(raw []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &m, nil
}

// The only shapes of a file path in a manifest, one per role: no
// directories but disks/, boot/ and states/, no "..". A disk's files are
// named for the disk, so a backing name never leaves disks/. A snapshot's
// state is named for its VM and snapshot (stateRE), a VM's current saved
// state for its VM alone (savedRE).
var (
	diskRE  = regexp.MustCompile(`^disks/vm[0-9]{1,6}-disk[0-9]{1,6}\.qcow2$`)
	baseRE  = regexp.MustCompile(`^disks/vm[0-9]{1,6}-disk[0-9]{1,6}-base\.qcow2$`)
	layerRE = regexp.MustCompile(`^disks/vm[0-9]{1,6}-disk[0-9]{1,6}-s[0-9]{1,6}\.qcow2$`)
	stateRE = regexp.MustCompile(`^states/vm[0-9]{1,6}-s[0-9]{1,6}\.state$`)
	savedRE = regexp.MustCompile(`^states/vm[0-9]{1,6}\.state$`)
	bootRE  = regexp.MustCompile(`^boot/t[0-9]{1,6}-(kernel|initrd)$`)
)

// MaxSnapshots bounds the snapshots a manifest may carry.
const MaxSnapshots = 1024

// Check checks the shape of a manifest from outside: known format and
// version, unique VMs, templates, networks and files, file paths of the
// one shape their role allows, hex checksums, disk and NIC indexes 0..n-1
// once each, addresses and MACs that parse, references that resolve; in
// version 2 the snapshot tree (unique names, each parent listed before
// its child, every VM disk in every snapshot, states only with state),
// a VM's saved state in version 2 only, and each disk's backing files (a file of the same disk listed before
// it, so a chain never leaves the disk's files and never loops). What the
// names, texts, hardware, command lines, network parameters and IP modes
// may be are the server's rules, which its caller applies.
func Check(m *Manifest) error {
	if m.Format != Format || (m.Version != Version && m.Version != VersionSnapshots) {
		return fmt.Errorf("format %q version %d, want %q version %d or %d", m.Format, m.Version, Format, Version, VersionSnapshots)
	}
	switch {
	case m.Version == Version && len(m.Snapshots) > 0:
		return fmt.Errorf("version %d carries no snapshots; this one lists %d", Version, len(m.Snapshots))
	case m.Version == VersionSnapshots && len(m.Snapshots) == 0 && m.SavedVMs() == 0:
		return fmt.Errorf("version %d without snapshots or saved VM states", VersionSnapshots)
	case len(m.Snapshots) > MaxSnapshots:
		return fmt.Errorf("%d snapshots, more than %d", len(m.Snapshots), MaxSnapshots)
	}
	if len(m.VMs) == 0 {
		return fmt.Errorf("no VMs")
	}
	seenFile := map[string]bool{}
	checkFile := func(f *File, re *regexp.Regexp, what string) error {
		if !re.MatchString(f.Path) || path.Clean(f.Path) != f.Path {
			return fmt.Errorf("file path %q is not allowed for %s", f.Path, what)
		}
		if seenFile[f.Path] {
			return fmt.Errorf("file %q appears twice", f.Path)
		}
		seenFile[f.Path] = true
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("file %q: checksum %q is not a sha256", f.Path, f.SHA256)
		}
		if f.Size < 0 {
			return fmt.Errorf("file %q: negative size", f.Path)
		}
		if f.Backing != "" && (re != diskRE && re != layerRE || m.Version == Version) {
			return fmt.Errorf("file %q: a backing file is not allowed for %s", f.Path, what)
		}
		return nil
	}
	nets := map[string]bool{}
	for _, n := range m.Networks {
		if nets[n.Name] {
			return fmt.Errorf("network %q appears twice", n.Name)
		}
		nets[n.Name] = true
	}
	tmpls := map[string]bool{}
	for _, t := range m.Templates {
		if tmpls[t.Name] {
			return fmt.Errorf("template %q appears twice", t.Name)
		}
		if t.Kernel == nil && (t.Initrd != nil || t.Cmdline != "") {
			return fmt.Errorf("template %q: an initrd or a command line without a kernel", t.Name)
		}
		for _, f := range []*File{t.Kernel, t.Initrd} {
			if f != nil {
				if err := checkFile(f, bootRE, "a boot file"); err != nil {
					return err
				}
			}
		}
		tmpls[t.Name] = true
	}
	seenVM := map[string]bool{}
	for _, vm := range m.VMs {
		if seenVM[vm.Name] {
			return fmt.Errorf("VM %q appears twice", vm.Name)
		}
		seenVM[vm.Name] = true
		if !tmpls[vm.Template] {
			return fmt.Errorf("VM %q: template %q is not in the manifest", vm.Name, vm.Template)
		}
		if len(vm.Disks) == 0 {
			return fmt.Errorf("VM %q has no disk", vm.Name)
		}
		diskIdx := make([]bool, len(vm.Disks))
		for _, d := range vm.Disks {
			if d.Index < 0 || d.Index >= len(vm.Disks) || diskIdx[d.Index] {
				return fmt.Errorf("VM %q: disk index %d out of 0..%d or used twice", vm.Name, d.Index, len(vm.Disks)-1)
			}
			diskIdx[d.Index] = true
			if d.VirtualSize <= 0 {
				return fmt.Errorf("VM %q disk %d: virtual size %d", vm.Name, d.Index, d.VirtualSize)
			}
			if err := checkFile(&d.File, diskRE, "a disk"); err != nil {
				return err
			}
			if d.Base != nil {
				if m.Version == Version {
					return fmt.Errorf("VM %q disk %d: version %d has no base files", vm.Name, d.Index, Version)
				}
				if err := checkFile(d.Base, baseRE, "a disk's base"); err != nil {
					return err
				}
			}
		}
		nicIdx := make([]bool, len(vm.NICs))
		for _, n := range vm.NICs {
			if n.Index < 0 || n.Index >= len(vm.NICs) || nicIdx[n.Index] {
				return fmt.Errorf("VM %q: NIC index %d out of 0..%d or used twice", vm.Name, n.Index, len(vm.NICs)-1)
			}
			nicIdx[n.Index] = true
			if n.IP != "" {
				if a, err := netip.ParseAddr(n.IP); err != nil || !a.Is4() {
					return fmt.Errorf("VM %q NIC %d: address %q is not an IPv4 address", vm.Name, n.Index, n.IP)
				}
			}
			if n.MAC != "" {
				if _, err := net.ParseMAC(n.MAC); err != nil {
					return fmt.Errorf("VM %q NIC %d: MAC %q: %v", vm.Name, n.Index, n.MAC, err)
				}
			}
			if !nets[n.Network] {
				return fmt.Errorf("VM %q NIC %d: network %q is not in the manifest", vm.Name, n.Index, n.Network)
			}
		}
		if vm.State != nil {
			if m.Version == Version {
				return fmt.Errorf("VM %q: version %d carries no saved state", vm.Name, Version)
			}
			if err := checkFile(vm.State, savedRE, "a VM's saved state"); err != nil {
				return err
			}
		}
	}
	if err := checkSnapshots(m, checkFile); err != nil {
		return err
	}
	for _, f := range m.Files() {
		if !seenFile[f.Path] {
			return fmt.Errorf("file %q is listed where no file belongs", f.Path)
		}
	}
	return checkBackings(m)
}

// checkSnapshots checks the snapshot tree of m (whose VMs are checked):
// unique names, each parent listed before its child (so the tree has no
// cycle), every disk of every VM in each snapshot once, a state for a VM
// of the snapshot only, and with state only.
func checkSnapshots(m *Manifest, checkFile func(*File, *regexp.Regexp, string) error) error {
	vms := map[string]*VM{}
	for i := range m.VMs {
		vms[m.VMs[i].Name] = &m.VMs[i]
	}
	names := map[string]bool{}
	for _, s := range m.Snapshots {
		switch {
		case s.Name == "":
			return fmt.Errorf("a snapshot without a name")
		case names[s.Name]:
			return fmt.Errorf("snapshot %q appears twice", s.Name)
		case s.Parent != "" && !names[s.Parent]:
			return fmt.Errorf("snapshot %q: its parent %q is not a snapshot listed before it", s.Name, s.Parent)
		}
		names[s.Name] = true
		type key struct {
			vm    string
			index int
		}
		disks := map[key]bool{}
		for i := range s.Disks {
			sd := &s.Disks[i]
			vm, ok := vms[sd.VM]
			if !ok {
				return fmt.Errorf("snapshot %q: VM %q is not in the manifest", s.Name, sd.VM)
			}
			if sd.Index < 0 || sd.Index >= len(vm.Disks) || disks[key{sd.VM, sd.Index}] {
				return fmt.Errorf("snapshot %q: VM %q disk index %d out of 0..%d or used twice", s.Name, sd.VM, sd.Index, len(vm.Disks)-1)
			}
			disks[key{sd.VM, sd.Index}] = true
			if err := checkFile(&sd.File, layerRE, "a snapshot's layer"); err != nil {
				return err
			}
		}
		for _, vm := range m.VMs {
			for _, d := range vm.Disks {
				if !disks[key{vm.Name, d.Index}] {
					return fmt.Errorf("snapshot %q lacks VM %q disk %d", s.Name, vm.Name, d.Index)
				}
			}
		}
		if s.WithState != (len(s.States) > 0) {
			return fmt.Errorf("snapshot %q: with_state %v but %d state files", s.Name, s.WithState, len(s.States))
		}
		stated := map[string]bool{}
		for i := range s.States {
			st := &s.States[i]
			if _, ok := vms[st.VM]; !ok || stated[st.VM] {
				return fmt.Errorf("snapshot %q: state of VM %q, which is not in the manifest or has two", s.Name, st.VM)
			}
			stated[st.VM] = true
			if err := checkFile(&st.File, stateRE, "a saved state"); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkBackings checks each disk's files: a backing file is a file of
// the same disk listed before it (DiskFiles order), so every chain stays
// inside the disk's files of the archive and ends at a standalone one.
func checkBackings(m *Manifest) error {
	for i, vm := range m.VMs {
		for j, d := range vm.Disks {
			before := map[string]bool{}
			for _, f := range m.DiskFiles(i, j) {
				if f.Backing != "" && !before[f.Backing] {
					return fmt.Errorf("VM %q disk %d: file %q reads through %q, which is not a file of that disk listed before it", vm.Name, d.Index, f.Path, f.Backing)
				}
				before[f.Path] = true
			}
		}
	}
	return nil
}
