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

// Format and Version identify the manifest.
const (
	Format  = "stagehand-archive"
	Version = 1
)

// Manifest describes an archive; it is the manifest.json of a bundle and
// of an archive directory.
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
}

// VM is one archived VM.
type VM struct {
	Name      string `json:"name"`
	Template  string `json:"template"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	Disks     []Disk `json:"disks"`
	NICs      []NIC  `json:"nics"`
}

// Disk is one disk of a VM: a standalone qcow2 file.
type Disk struct {
	Index       int   `json:"index"`
	VirtualSize int64 `json:"virtual_size"`
	File        File  `json:"file"`
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

// Files lists every file of the archive in bundle order: disks, then boot
// files.
func (m *Manifest) Files() []*File {
	var out []*File
	for i := range m.VMs {
		for j := range m.VMs[i].Disks {
			out = append(out, &m.VMs[i].Disks[j].File)
		}
	}
	for i := range m.Templates {
		for _, f := range []*File{m.Templates[i].Kernel, m.Templates[i].Initrd} {
			if f != nil {
				out = append(out, f)
			}
		}
	}
	return out
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

// pathRE is the only shape of a file path in a manifest: no directories
// but disks/ and boot/, no "..".
var pathRE = regexp.MustCompile(`^(disks/vm[0-9]+-disk[0-9]+\.qcow2|boot/t[0-9]+-(kernel|initrd))$`)

// Check checks the shape of a manifest from outside: known format and
// version, unique VMs, templates, networks and files, file paths of the
// one allowed shape, hex checksums, disk and NIC indexes 0..n-1 once
// each, addresses and MACs that parse, references that resolve. What the
// names, texts, hardware, command lines, network parameters and IP modes
// may be are the server's rules, which its caller applies.
func Check(m *Manifest) error {
	if m.Format != Format || m.Version != Version {
		return fmt.Errorf("format %q version %d, want %q version %d", m.Format, m.Version, Format, Version)
	}
	if len(m.VMs) == 0 {
		return fmt.Errorf("no VMs")
	}
	seenFile := map[string]bool{}
	for _, f := range m.Files() {
		if !pathRE.MatchString(f.Path) || path.Clean(f.Path) != f.Path {
			return fmt.Errorf("file path %q is not allowed", f.Path)
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
	}
	return nil
}
