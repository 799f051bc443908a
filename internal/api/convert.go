package api

import (
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/cluster"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/events"
)

// The converters below turn lab views into wire types. Slices are never nil,
// so that JSON shows [] rather than null.

func templateToWire(t *lab.TemplateView) wire.Template {
	return wire.Template{
		Name:          t.Name,
		Description:   t.Description,
		CPUs:          t.CPUs,
		MemoryMiB:     t.MemoryMiB,
		Disks:         layersToWire(t.Disks),
		Kernel:        t.Kernel,
		Initrd:        t.Initrd,
		Cmdline:       t.Cmdline,
		Seed:          t.Seed,
		UserDataBytes: t.UserDataBytes,
		CreatedAt:     t.CreatedAt,
		Workspace:     t.Workspace,
		Owner:         t.Owner,
	}
}

func layersToWire(ls []lab.LayerView) []wire.Layer {
	out := make([]wire.Layer, 0, len(ls))
	for _, l := range ls {
		out = append(out, wire.Layer{
			ID:          l.ID,
			Path:        l.Path,
			Frozen:      l.Frozen,
			VirtualSize: l.VirtualSize,
			ActualSize:  l.ActualSize,
			Template:    l.Template,
			Snapshot:    l.Snapshot,
			Shortcut:    shortcutRunToWire(l.Shortcut),
		})
	}
	return out
}

func networkToWire(n *lab.NetworkView) wire.Network {
	usage := make([]wire.IPUsage, 0, len(n.Usage))
	for _, u := range n.Usage {
		holders := make([]wire.IPHolder, 0, len(u.Holders))
		for _, h := range u.Holders {
			holders = append(holders, wire.IPHolder{Config: h.Config, VM: h.VM, NIC: h.NIC})
		}
		usage = append(usage, wire.IPUsage{IP: u.IP, Kind: u.Kind, InPool: u.InPool, Holders: holders, Holder: u.Holder})
	}
	return wire.Network{
		Name:      n.Name,
		Subnet:    n.Subnet,
		Gateway:   n.Gateway,
		DNS:       nonNil(n.DNS),
		Pools:     nonNil(n.Pools),
		PoolSize:  n.PoolSize,
		PoolUsed:  n.PoolUsed,
		Usage:     usage,
		CreatedAt: n.CreatedAt,
		Workspace: n.Workspace,
		Owner:     n.Owner,
	}
}

func configToWire(c *lab.ConfigView) wire.Config {
	vms := make([]wire.VM, 0, len(c.VMs))
	for _, v := range c.VMs {
		disks := make([]wire.Disk, 0, len(v.Disks))
		for _, d := range v.Disks {
			disks = append(disks, wire.Disk{Index: d.Index, Path: d.Path, Chain: nonNil(d.Chain)})
		}
		nics := make([]wire.NIC, 0, len(v.NICs))
		for _, n := range v.NICs {
			nics = append(nics, wire.NIC{
				Index:      n.Index,
				Network:    n.Network,
				MAC:        n.MAC,
				IPMode:     n.IPMode,
				IP:         n.IP,
				ExternalIP: n.ExternalIP,
			})
		}
		vms = append(vms, wire.VM{
			Name:          v.Name,
			State:         v.State,
			PID:           v.PID,
			HasSavedState: v.HasSavedState,
			Template:      v.Template,
			Hostname:      v.Hostname,
			InstanceID:    v.InstanceID,
			Host:          v.Host,
			CPUs:          v.CPUs,
			MemoryMiB:     v.MemoryMiB,
			Disks:         disks,
			NICs:          nics,
		})
	}
	return wire.Config{
		Name:        c.Name,
		Kind:        c.Kind,
		Lease:       leaseToWire(c.Lease),
		Description: c.Description,
		Owner:       c.Owner,
		Workspace:   c.Workspace,
		State:       c.State,
		Fenced:      c.Fenced,
		FencePolicy: c.FencePolicy,
		LastError:   c.LastError,
		Host:        c.Host,
		CreatedAt:   c.CreatedAt,
		UpdatedAt:   c.UpdatedAt,
		VMs:         vms,
		Placement:   placementToWire(c.Placement),
		Egress:      egressToWire(c.Egress),
	}
}

func placementToWire(p *lab.Placement) *wire.Placement {
	if p == nil {
		return nil
	}
	out := &wire.Placement{Host: p.Host, Moved: p.Moved, MovedBytes: p.MovedBytes, Verdicts: verdictsToWire(p.Verdicts)}
	for _, vm := range p.VMs {
		out.VMs = append(out.VMs, wire.VMPlacement{VM: vm.VM, Host: vm.Host, Verdicts: verdictsToWire(vm.Verdicts)})
	}
	return out
}

func verdictsToWire(vs []cluster.Verdict) []wire.Verdict {
	out := []wire.Verdict{}
	for _, v := range vs {
		out = append(out, wire.Verdict{Host: v.Host, Fits: v.Fits, Why: v.Why, FreeMemoryMiB: v.FreeMemoryMiB,
			FreeCPUs: v.FreeCPUs, HeldLayers: v.HeldLayers, MissingBytes: v.MissingBytes, Text: v.String()})
	}
	return out
}

func jobToWire(j jobs.Job) wire.Job {
	return wire.Job{
		ID:      j.ID,
		Kind:    j.Kind,
		Subject: j.Subject,
		State:   j.State,
		Done:    j.Done,
		Total:   j.Total,
		Error:   j.Error,
		Started: j.Started,
		Ended:   j.Ended,
	}
}

func doctorToWire(r *lab.DoctorReport) wire.DoctorReport {
	problems := make([]wire.Problem, 0, len(r.Problems))
	for _, p := range r.Problems {
		problems = append(problems, wire.Problem{
			Kind:       p.Kind,
			Subject:    p.Subject,
			Detail:     p.Detail,
			Repaired:   p.Repaired,
			Repairable: p.Repairable,
		})
	}
	return wire.DoctorReport{Problems: problems, Checked: r.Checked, ImageChecks: r.ImageChecks, Accel: r.Accel, AccelReason: r.AccelReason}
}

// nonNil copies s into a non-nil slice.
func nonNil(s []string) []string {
	return append(make([]string, 0, len(s)), s...)
}

func leaseToWire(l lab.LeaseView) wire.Lease {
	return wire.Lease{
		StorageExpires:     l.StorageExpires,
		ExpiredAt:          l.ExpiredAt,
		DeleteAt:           l.DeleteAt,
		DeployLeaseSeconds: int64(l.DeployLease / time.Second),
		DeployExpires:      l.DeployExpires,
		UndeployAction:     l.UndeployAction,
		LastUsed:           l.LastUsed,
		Ladder:             ladderToWire(l.Ladder),
	}
}

func archiveToWire(a *lab.ArchiveView) wire.Archive {
	out := wire.Archive{
		Name: a.Name, Source: a.Source, Dir: a.Dir, Description: a.Description, Owner: a.Owner,
		Workspace: a.Workspace,
		Size:      a.Size, CreatedAt: a.CreatedAt, Networks: nonNil(a.Networks), VMs: []wire.ArchiveVM{},
		Snapshots: []wire.ArchiveSnapshot{}, Lease: leaseToWire(a.Lease),
	}
	for _, sn := range a.Snapshots {
		out.Snapshots = append(out.Snapshots, wire.ArchiveSnapshot{Name: sn.Name, Parent: sn.Parent, CreatedAt: sn.CreatedAt, WithState: sn.WithState, Size: sn.Size})
	}
	for _, vm := range a.VMs {
		wv := wire.ArchiveVM{Name: vm.Name, Template: vm.Template, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, Disks: []wire.ArchiveDisk{}, NICs: []wire.NIC{},
			SavedState: vm.SavedState, SavedStateSize: vm.SavedStateSize}
		for _, d := range vm.Disks {
			wv.Disks = append(wv.Disks, wire.ArchiveDisk{Index: d.Index, Path: d.Path, VirtualSize: d.VirtualSize, Size: d.Size, SHA256: d.SHA256, Backing: d.Backing})
		}
		for _, n := range vm.NICs {
			wv.NICs = append(wv.NICs, wire.NIC{Index: n.Index, Network: n.Network, MAC: n.MAC, IPMode: n.IPMode, IP: n.IP})
		}
		out.VMs = append(out.VMs, wv)
	}
	return out
}

func cleanupToWire(r *lab.CleanupReport) wire.CleanupReport {
	out := wire.CleanupReport{Items: []wire.CleanupItem{}, Frees: r.Frees, Applied: r.Applied, Freed: r.Freed,
		Policy: r.Policy, GraceSeconds: int64(r.Grace / time.Second)}
	for _, it := range r.Items {
		out.Items = append(out.Items, wire.CleanupItem{
			Object: it.Object, Name: it.Name, State: it.State, Reasons: nonNil(it.Reasons), Lease: leaseToWire(it.Lease),
			IdleSince: it.IdleSince, Frees: it.Frees, Deletable: it.Deletable, Kept: it.Kept, Deleted: it.Deleted, Error: it.Error,
		})
	}
	return out
}

func eventToWire(e events.View) wire.Event {
	return wire.Event{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Object: e.Object, Subject: e.Subject, Result: e.Result, Detail: e.Detail}
}
