package bundle_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"stagehand/internal/lab/bundle"
)

// sealed is a file entry with a well-formed checksum.
func sealed(path, backing string) bundle.File {
	return bundle.File{Path: path, Size: 100, SHA256: strings.Repeat("ab", 32), Backing: backing}
}

// snapshotManifest is a valid version 2 manifest: one VM with one disk, a
// base, snapshots s1 → {s2 (with state), s3}, the current top on s3, and
// the VM's saved state.
func snapshotManifest() *bundle.Manifest {
	base := sealed("disks/vm0-disk0-base.qcow2", "")
	saved := sealed("states/vm0.state", "")
	return &bundle.Manifest{Format: bundle.Format, Version: bundle.VersionSnapshots, Name: "a1", CreatedAt: time.Unix(0, 0).UTC(),
		Networks:  []bundle.Network{{Name: "lan", Subnet: "10.9.0.0/24", Pools: []string{"10.9.0.10-10.9.0.50"}}},
		Templates: []bundle.Template{{Name: "t1", CPUs: 1, MemoryMiB: 64}},
		VMs: []bundle.VM{{Name: "vm1", Template: "t1", CPUs: 1, MemoryMiB: 64,
			Disks: []bundle.Disk{{Index: 0, VirtualSize: 1 << 20, Base: &base, File: sealed("disks/vm0-disk0.qcow2", "disks/vm0-disk0-s2.qcow2")}},
			NICs:  []bundle.NIC{{Index: 0, Network: "lan", IPMode: "pool", IP: "10.9.0.10"}},
			State: &saved}},
		Snapshots: []bundle.Snapshot{
			{Name: "s1", Disks: []bundle.SnapshotDisk{{VM: "vm1", Index: 0, File: sealed("disks/vm0-disk0-s0.qcow2", "disks/vm0-disk0-base.qcow2")}}},
			{Name: "s2", Parent: "s1", WithState: true,
				Disks:  []bundle.SnapshotDisk{{VM: "vm1", Index: 0, File: sealed("disks/vm0-disk0-s1.qcow2", "disks/vm0-disk0-s0.qcow2")}},
				States: []bundle.SnapshotState{{VM: "vm1", File: sealed("states/vm0-s1.state", "")}}},
			{Name: "s3", Parent: "s1", Disks: []bundle.SnapshotDisk{{VM: "vm1", Index: 0, File: sealed("disks/vm0-disk0-s2.qcow2", "disks/vm0-disk0-s0.qcow2")}}},
		},
	}
}

func TestCheckSnapshotTree(t *testing.T) {
	if err := bundle.Check(snapshotManifest()); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	layer := func(m *bundle.Manifest, s int) *bundle.File { return &m.Snapshots[s].Disks[0].File }
	cases := []struct {
		name, want string
		edit       func(m *bundle.Manifest)
	}{
		{"version 1 with snapshots", "carries no snapshots", func(m *bundle.Manifest) { m.Version = bundle.Version }},
		{"version 2 without snapshots", "without snapshots", func(m *bundle.Manifest) {
			m.Snapshots = nil
			m.VMs[0].Disks[0].Base = nil
			m.VMs[0].Disks[0].File.Backing = ""
			m.VMs[0].State = nil
		}},
		{"version 1 with a saved state", "carries no saved state", func(m *bundle.Manifest) {
			m.Version, m.Snapshots = bundle.Version, nil
			m.VMs[0].Disks[0].Base = nil
			m.VMs[0].Disks[0].File.Backing = ""
		}},
		{"saved state at a snapshot state's path", "not allowed for a VM's saved state", func(m *bundle.Manifest) {
			m.VMs[0].State.Path = "states/vm0-s9.state"
		}},
		{"saved state outside states/", "not allowed for a VM's saved state", func(m *bundle.Manifest) { m.VMs[0].State.Path = "disks/vm0.state" }},
		{"snapshot state at a saved state's path", "not allowed for a saved state", func(m *bundle.Manifest) {
			m.Snapshots[1].States[0].File.Path = m.VMs[0].State.Path
		}},
		{"saved state with a backing file", "a backing file is not allowed for a VM's saved state", func(m *bundle.Manifest) {
			m.VMs[0].State.Backing = "disks/vm0-disk0.qcow2"
		}},
		{"saved state without a checksum", "not a sha256", func(m *bundle.Manifest) { m.VMs[0].State.SHA256 = "" }},
		{"saved state of negative size", "negative size", func(m *bundle.Manifest) { m.VMs[0].State.Size = -1 }},
		{"version 3", "version 3", func(m *bundle.Manifest) { m.Version = 3 }},
		{"parent missing", `parent "nope"`, func(m *bundle.Manifest) { m.Snapshots[1].Parent = "nope" }},
		{"parent after its child (a cycle)", `parent "s3"`, func(m *bundle.Manifest) { m.Snapshots[0].Parent = "s3" }},
		{"parent is itself", `parent "s1"`, func(m *bundle.Manifest) { m.Snapshots[0].Parent = "s1" }},
		{"name twice", `"s1" appears twice`, func(m *bundle.Manifest) { m.Snapshots[2].Name = "s1" }},
		{"no name", "without a name", func(m *bundle.Manifest) { m.Snapshots[0].Name = "" }},
		{"disk of an unknown VM", `VM "ghost"`, func(m *bundle.Manifest) { m.Snapshots[0].Disks[0].VM = "ghost" }},
		{"disk index out of range", "disk index 1", func(m *bundle.Manifest) { m.Snapshots[0].Disks[0].Index = 1 }},
		{"snapshot without the disk", "lacks VM", func(m *bundle.Manifest) { m.Snapshots[2].Disks = nil }},
		{"state without with_state", "with_state false", func(m *bundle.Manifest) { m.Snapshots[1].WithState = false }},
		{"with_state without state", "with_state true", func(m *bundle.Manifest) { m.Snapshots[0].WithState = true }},
		{"state of an unknown VM", `state of VM "ghost"`, func(m *bundle.Manifest) { m.Snapshots[1].States[0].VM = "ghost" }},
		{"file listed twice", "appears twice", func(m *bundle.Manifest) { layer(m, 2).Path = layer(m, 1).Path }},
		{"state at a disk's path", "not allowed for a saved state", func(m *bundle.Manifest) { m.Snapshots[1].States[0].File.Path = "disks/vm0-s1.state" }},
		{"layer outside disks/", "not allowed", func(m *bundle.Manifest) { layer(m, 0).Path = "../vm0-disk0-s0.qcow2" }},
		{"layer path with a directory", "not allowed", func(m *bundle.Manifest) { layer(m, 0).Path = "disks/x/vm0-disk0-s0.qcow2" }},
		{"base with a backing file", "not allowed for a disk's base", func(m *bundle.Manifest) { m.VMs[0].Disks[0].Base.Backing = "disks/vm0-disk0.qcow2" }},
		{"backing outside the archive", `reads through "/etc/passwd"`, func(m *bundle.Manifest) { layer(m, 0).Backing = "/etc/passwd" }},
		{"backing escapes by ..", `reads through "disks/../../x.qcow2"`, func(m *bundle.Manifest) { layer(m, 0).Backing = "disks/../../x.qcow2" }},
		{"backing loops onto itself", "reads through", func(m *bundle.Manifest) { layer(m, 0).Backing = layer(m, 0).Path }},
		{"backing loops through a later file", "reads through", func(m *bundle.Manifest) { layer(m, 0).Backing = layer(m, 1).Path }},
		{"backing is another disk's file", "reads through", func(m *bundle.Manifest) {
			m.VMs[0].Disks[0].File.Backing = "disks/vm1-disk0-base.qcow2"
		}},
		{"backing on a state", "a backing file is not allowed for a saved state", func(m *bundle.Manifest) {
			m.Snapshots[1].States[0].File.Backing = "disks/vm0-disk0-base.qcow2"
		}},
		{"bad checksum", "not a sha256", func(m *bundle.Manifest) { layer(m, 1).SHA256 = "xyz" }},
		{"negative size", "negative size", func(m *bundle.Manifest) { m.Snapshots[1].States[0].File.Size = -1 }},
		{"too many snapshots", "more than", func(m *bundle.Manifest) {
			for len(m.Snapshots) <= bundle.MaxSnapshots {
				m.Snapshots = append(m.Snapshots, m.Snapshots[0])
			}
		}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			m := snapshotManifest()
			c.edit(m)
			err := bundle.Check(m)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Check: %v; want an error containing %q", err, c.want)
			}
		})
	}
}

// A version 1 manifest is written byte for byte as before snapshots
// travelled: none of the new fields appear.
func TestVersionOneUnchanged(t *testing.T) {
	m := snapshotManifest()
	m.Version, m.Snapshots = bundle.Version, nil
	m.VMs[0].Disks[0].Base = nil
	m.VMs[0].Disks[0].File.Backing = ""
	m.VMs[0].State = nil
	if err := bundle.Check(m); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"snapshots", "backing", "base", "state"} {
		if strings.Contains(string(raw), `"`+field+`"`) {
			t.Errorf("version 1 manifest has %q: %s", field, raw)
		}
	}
	if got := len(m.Files()); got != 1 {
		t.Errorf("version 1 files: %d, want the disk only", got)
	}
}

// A configuration with a saved VM and no snapshots is a version 2
// manifest of its disk and that state.
func TestSavedStateWithoutSnapshots(t *testing.T) {
	m := snapshotManifest()
	m.Snapshots = nil
	m.VMs[0].Disks[0].Base = nil
	m.VMs[0].Disks[0].File.Backing = ""
	if err := bundle.Check(m); err != nil {
		t.Fatalf("version 2 with a saved state only: %v", err)
	}
	var got []string
	for _, f := range m.Files() {
		got = append(got, f.Path)
	}
	if strings.Join(got, " ") != "disks/vm0-disk0.qcow2 states/vm0.state" || m.SavedVMs() != 1 {
		t.Errorf("Files() = %v, SavedVMs() = %d; want the disk and the saved state, 1", got, m.SavedVMs())
	}
}

// Files lists each disk's files with their backing files first, then the
// boot files, then the snapshots' states, then the VMs' saved states.
func TestFilesOrder(t *testing.T) {
	var got []string
	for _, f := range snapshotManifest().Files() {
		got = append(got, f.Path)
	}
	want := "disks/vm0-disk0-base.qcow2 disks/vm0-disk0-s0.qcow2 disks/vm0-disk0-s1.qcow2 disks/vm0-disk0-s2.qcow2 disks/vm0-disk0.qcow2 states/vm0-s1.state states/vm0.state"
	if strings.Join(got, " ") != want {
		t.Errorf("Files() = %v, want %s", got, want)
	}
}
