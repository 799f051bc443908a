package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/journal"
	"stagehand/internal/seed"
	"stagehand/internal/store"
)

// MaxVMs bounds the VMs of one configuration: each costs a qemu-img run
// per disk at creation, so one request must not be able to ask for
// thousands.
const MaxVMs = 256

// CreateConfig makes a configuration: for each VM, a writable delta on top
// of each of its template's bases, a unique MAC and, on a network, an
// address (from the pool, manual, or none for dhcp).
func (s Configs) Create(ctx context.Context, spec ConfigSpec) (*ConfigView, error) {
	if err := CheckName("configuration", spec.Name); err != nil {
		return nil, err
	}
	if err := checkText("description", spec.Description, MaxDescription); err != nil {
		return nil, fmt.Errorf("configuration %q: %w", spec.Name, err)
	}
	if err := checkText("owner", spec.Owner, MaxOwner); err != nil {
		return nil, fmt.Errorf("configuration %q: %w", spec.Name, err)
	}
	if err := checkLeaseLength("storage", spec.StorageLease); err != nil {
		return nil, fmt.Errorf("configuration %q: %w", spec.Name, err)
	}
	if len(spec.VMs) == 0 {
		return nil, errdefs.Invalid("configuration %q: at least one VM is required", spec.Name)
	}
	if len(spec.VMs) > MaxVMs {
		return nil, errdefs.Invalid("configuration %q: %d VMs, at most %d are allowed", spec.Name, len(spec.VMs), MaxVMs)
	}
	seen := map[string]bool{}
	for _, v := range spec.VMs {
		if err := CheckName("VM", v.Name); err != nil {
			return nil, fmt.Errorf("configuration %q: %w", spec.Name, err)
		}
		if seen[v.Name] {
			return nil, errdefs.Invalid("configuration %q: VM name %q appears twice", spec.Name, v.Name)
		}
		seen[v.Name] = true
		if _, _, err := parseIPMode(v); err != nil {
			return nil, fmt.Errorf("configuration %q: %w", spec.Name, err)
		}
		if err := checkHostname(spec.Name, v.Name, v.Hostname); err != nil {
			return nil, err
		}
	}

	// The templates are locked with the configuration (keyedLocks sorts
	// the keys, so no deadlock with other multi-key callers): a template
	// cannot be deleted between reading its base layers and committing the
	// deltas on them. DeleteTemplate takes the same template/NAME key.
	keys := []string{spec.Name}
	for _, v := range spec.VMs {
		keys = append(keys, templateLockKey(v.Template))
	}
	unlock := s.locks.lock(keys...)
	defer unlock()

	place, err := s.placer.place(ctx, auth.ConfigCreate, access.KindConfig, spec.Workspace, 0)
	if err != nil {
		return nil, fmt.Errorf("create configuration %q: %w", spec.Name, err)
	}

	// Resolve templates and networks, and plan one delta per template disk.
	type plannedVM struct {
		spec   VMSpec
		tmpl   *store.Template
		nw     *store.Network
		deltas []string // new layer paths, one per template disk
		bases  []store.Layer
	}
	var plan []plannedVM
	err = s.store.View(ctx, func(tx store.Tx) error {
		if _, err := tx.Configs().Get(spec.Name); err == nil {
			return errdefs.Conflict("configuration %q already exists", spec.Name)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		for _, v := range spec.VMs {
			t, err := tx.Templates().Get(v.Template)
			if err != nil {
				return fmt.Errorf("VM %q: %w", v.Name, err)
			}
			p := plannedVM{spec: v, tmpl: t}
			if v.Network != "" {
				if p.nw, err = tx.Networks().Get(v.Network); err != nil {
					return fmt.Errorf("VM %q: %w", v.Name, err)
				}
			}
			for _, id := range t.LayerIDs {
				l, err := tx.Layers().Get(id)
				if err != nil {
					return err
				}
				p.bases = append(p.bases, *l)
				p.deltas = append(p.deltas, newLayerPath())
			}
			plan = append(plan, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create configuration %q: %w", spec.Name, err)
	}

	var created []string
	for _, p := range plan {
		created = append(created, p.deltas...)
	}
	op, err := s.journal.Begin(ctx, "create", spec.Name, created, nil)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*ConfigView, error) {
		return nil, s.journal.Fail(op, fmt.Errorf("create configuration %q: %w", spec.Name, err))
	}
	for _, p := range plan {
		for i, base := range p.bases {
			if err := s.journal.Step(ctx, op, "create-delta"); err != nil {
				return fail(err)
			}
			if err := s.disks.CreateDelta(ctx, s.abs(base.Path), s.abs(p.deltas[i])); err != nil {
				return fail(fmt.Errorf("VM %q disk %d: %w", p.spec.Name, i, err))
			}
		}
	}
	if err := s.journal.Step(ctx, op, "commit"); err != nil {
		return fail(err)
	}
	var view *ConfigView
	err = s.update(ctx, func(tx store.Tx) error {
		// The locks make this hold; checking it where the deltas are
		// committed keeps a template deleted by any other path from
		// leaving deltas on removed bases.
		for _, p := range plan {
			if err := checkTemplateUnchanged(tx, p.tmpl); err != nil {
				return fmt.Errorf("VM %q: %w", p.spec.Name, err)
			}
		}
		c := &store.Config{Name: spec.Name, Description: spec.Description, Owner: spec.Owner, State: store.StateUndeployed,
			WorkspaceID: place.WorkspaceID, OwnerID: place.OwnerID, Host: s.hostName}
		var diskBytes int64
		for _, p := range plan {
			for _, base := range p.bases {
				diskBytes += base.VirtualSize
			}
		}
		if err := storedQuota(tx, place, len(plan), diskBytes); err != nil {
			return fmt.Errorf("create configuration %q: %w", spec.Name, err)
		}
		for _, p := range plan {
			vm := store.VM{Name: p.spec.Name, TemplateID: p.tmpl.ID, CPUs: p.tmpl.CPUs, MemoryMiB: p.tmpl.MemoryMiB, State: store.StateUndeployed,
				InstanceID: seed.NewInstanceID(), Hostname: p.spec.Hostname}
			for i, base := range p.bases {
				l := &store.Layer{Path: p.deltas[i], ParentID: base.ID, VirtualSize: base.VirtualSize}
				if err := tx.Layers().Create(l); err != nil {
					return err
				}
				vm.Disks = append(vm.Disks, store.Disk{Index: i, TopLayerID: l.ID})
			}
			if p.nw != nil {
				mode, ip, _ := parseIPMode(p.spec)
				nic := store.NIC{Index: 0, NetworkID: p.nw.ID, MAC: newMAC(), IPMode: mode}
				a, err := s.takeAddress(tx, p.nw, mode, ip)
				if err != nil {
					return fmt.Errorf("VM %q: %w", p.spec.Name, err)
				}
				if a != nil {
					nic.IP, nic.AllocationID = a.IP, a.ID
				}
				vm.NICs = append(vm.NICs, nic)
			}
			c.VMs = append(c.VMs, vm)
		}
		if err := tx.Configs().Create(c); err != nil {
			return err
		}
		if err := s.leases.started(tx, configLease(c.ID), spec.StorageLease); err != nil {
			return err
		}
		if err := journal.Commit(tx, op, nil); err != nil {
			return err
		}
		var err error
		view, err = s.views.config(tx, c)
		return err
	})
	if err != nil {
		return fail(err)
	}
	s.journal.Finish(op)
	s.log.Info("configuration created", "config", spec.Name, "vms", len(plan))
	s.events.record(ctx, ObjectConfig, "create", spec.Name, "")
	return view, nil
}

// templateLockKey is the keyedLocks key of template name, distinct from
// configuration names (a template and a configuration may share a name).
func templateLockKey(name string) string { return "template/" + name }

// checkTemplateUnchanged returns a conflict when template t, read earlier,
// is no longer in the store with the same base layers.
func checkTemplateUnchanged(tx store.Tx, t *store.Template) error {
	now, err := tx.Templates().GetByID(t.ID)
	if errors.Is(err, errdefs.ErrNotFound) {
		return errdefs.Conflict("template %q was deleted meanwhile", t.Name)
	}
	if err != nil {
		return err
	}
	if now.Name != t.Name || !slices.Equal(now.LayerIDs, t.LayerIDs) {
		return errdefs.Conflict("template %q changed meanwhile", t.Name)
	}
	return nil
}

// parseIPMode reads a VMSpec's IP field.
func parseIPMode(v VMSpec) (string, netip.Addr, error) {
	ip := strings.TrimSpace(v.IP)
	if v.Network == "" {
		if ip != "" {
			return "", netip.Addr{}, errdefs.Invalid("VM %q: address %q needs a network", v.Name, ip)
		}
		return "", netip.Addr{}, nil
	}
	switch ip {
	case "", store.IPModePool:
		return store.IPModePool, netip.Addr{}, nil
	case store.IPModeDHCP:
		return store.IPModeDHCP, netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return "", netip.Addr{}, errdefs.Invalid("VM %q: ip %q is not pool, dhcp or an IPv4 address", v.Name, ip)
	}
	return store.IPModeManual, a, nil
}

// ListConfigs returns the configurations the caller may see.
func (s Configs) List(ctx context.Context) ([]ConfigView, error) { return s.ListIn(ctx, "") }

// ListIn returns the configurations the caller may see in workspace ("ws"
// or "org/ws"; "" every workspace).
func (s Configs) ListIn(ctx context.Context, workspace string) ([]ConfigView, error) {
	return s.listIn(ctx, workspace, false)
}

// listIn returns the configurations (library false; with what the running
// daemon knows of their VMs) or the library entries (library true) the
// caller may see in workspace.
func (s Configs) listIn(ctx context.Context, workspace string, library bool) ([]ConfigView, error) {
	kind := access.KindConfig
	if library {
		kind = access.KindLibrary
	}
	sc, err := s.access.Scope(ctx, kind)
	if err != nil {
		return nil, err
	}
	return viewIn(ctx, s.store, func(tx store.Tx) ([]ConfigView, error) {
		cs, err := listConfigs(tx, sc)
		if err == nil {
			cs, err = inWorkspace(tx, workspace, cs, func(c *store.Config) int64 { return c.WorkspaceID })
		}
		if err != nil {
			return nil, err
		}
		cs = slices.DeleteFunc(cs, func(c store.Config) bool { return (c.Kind == store.KindLibrary) != library })
		shared, err := listShared(tx) // once for the whole list
		if err != nil {
			return nil, err
		}
		return viewsOf(cs, func(c *store.Config) (*ConfigView, error) {
			v, err := s.views.configIn(tx, c, shared)
			if err != nil || library {
				return v, err
			}
			return s.views.withRuntime(v), nil
		})
	})
}

// GetConfig returns one configuration.
func (s Configs) Get(ctx context.Context, name string) (*ConfigView, error) {
	out, err := viewIn(ctx, s.store, func(tx store.Tx) (*ConfigView, error) {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return nil, err
		}
		return s.views.config(tx, c)
	})
	return s.views.withRuntime(out), err
}

// DeleteConfig deletes an undeployed configuration: its VMs' writable
// layers, then every frozen layer left without children, and the addresses
// whose family it was the last member of.
func (s Configs) Delete(ctx context.Context, name string) error {
	return s.deleteConfig(ctx, name, store.KindConfig)
}

// deleteConfig deletes configuration name, which must be of kind.
func (s *core) deleteConfig(ctx context.Context, name, kind string) error {
	unlock := s.locks.lock(name)
	defer unlock()
	var op *store.Op
	var vmIDs []int64
	err := s.update(ctx, func(tx store.Tx) error {
		vmIDs = nil
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if c.State != store.StateUndeployed {
			return errdefs.Conflict("configuration %q is %s; undeploy it before deleting", name, c.State)
		}
		if err := checkKind(c, kind, "delete it with this command"); err != nil {
			return err
		}
		var tops, allocs []int64
		var extra []string // saved states
		for _, v := range c.VMs {
			if s.deploys.HasSavedState(v.ID) {
				extra = append(extra, deploy.StateFile(v.ID))
			}
			vmIDs = append(vmIDs, v.ID)
			for _, d := range v.Disks {
				tops = append(tops, d.TopLayerID)
			}
			for _, n := range v.NICs {
				allocs = append(allocs, n.AllocationID)
			}
		}
		// Its snapshots go with it (the store cascades): their layers are
		// released like the tops, their state files removed.
		snapLayers, snapFiles, err := snapshotFiles(tx, c.ID)
		if err != nil {
			return err
		}
		tops, extra = append(tops, snapLayers...), append(extra, snapFiles...)
		if err := tx.Configs().Delete(c.ID); err != nil {
			return err
		}
		removed, err := releaseLayers(tx, tops)
		if err != nil {
			return err
		}
		if err := s.releaseAllocations(tx, allocs); err != nil {
			return err
		}
		op = &store.Op{Kind: "delete", Subject: name}
		if err := s.journal.Step(ctx, op, "commit"); err != nil {
			return err
		}
		if err := tx.Ops().Create(op); err != nil {
			return err
		}
		return journal.Commit(tx, op, append(removed, extra...))
	})
	if err != nil {
		return fmt.Errorf("delete configuration %q: %w", name, err)
	}
	for _, id := range vmIDs {
		os.RemoveAll(s.deploys.VMRunDir(id)) // sockets and console logs
	}
	if err := s.journal.Step(ctx, op, "remove-files"); err != nil {
		// The records are gone; the files are removed by the next Recover.
		return fmt.Errorf("delete configuration %q: %w", name, err)
	}
	s.log.Info("configuration deleted", "config", name, "files", len(op.RemoveFiles))
	s.events.record(ctx, kindObject(kind), "delete", name, "")
	return s.journal.Finish(op)
}

func (vs views) config(tx store.Tx, c *store.Config) (*ConfigView, error) {
	idx, err := loadLayers(tx)
	if err != nil {
		return nil, err
	}
	return vs.configIn(tx, c, &configShared{names: access.NewNames(tx), layers: idx})
}

// configShared is what the views of a list of configurations read once
// for all of them: a layer index, a lease or a template read per
// configuration made a list of N configurations cost N reads of every
// layer, then 2 × N queries.
type configShared struct {
	names  *access.Names
	layers layerIndex
	// listed: leases holds every configuration's lease (by configuration
	// id) and templates every template's name (by id); else (one
	// configuration's view) the view reads its own lease and its VMs'
	// templates.
	listed    bool
	leases    map[int64]*store.Lease
	templates map[int64]string
	homes     *homes // which homes are offline
}

// listShared reads what a list of configuration views shares.
func listShared(tx store.Tx) (*configShared, error) {
	idx, err := loadLayers(tx)
	if err != nil {
		return nil, err
	}
	ls, err := tx.Leases().List()
	if err != nil {
		return nil, err
	}
	leases := make(map[int64]*store.Lease, len(ls))
	for i := range ls {
		if ls[i].ConfigID != 0 {
			leases[ls[i].ConfigID] = &ls[i]
		}
	}
	ts, err := tx.Templates().List()
	if err != nil {
		return nil, err
	}
	templates := make(map[int64]string, len(ts))
	for _, t := range ts {
		templates[t.ID] = t.Name
	}
	return &configShared{names: access.NewNames(tx), layers: idx, listed: true, leases: leases, templates: templates}, nil
}

// configLease returns configuration id's lease as users see it.
func (vs views) configLease(tx store.Tx, id int64, sh *configShared) LeaseView {
	if !sh.listed {
		return vs.leases.view(tx, configLease(id))
	}
	return vs.lease(sh.leases[id]) // none: nil, the defaults, as leases.view shows it
}

// templateName returns the name of template id, "" when it is gone.
func (sh *configShared) templateName(tx store.Tx, id int64) string {
	if sh.templates == nil {
		sh.templates = map[int64]string{}
	}
	name, ok := sh.templates[id]
	if !ok && !sh.listed {
		if t, err := tx.Templates().GetByID(id); err == nil {
			name = t.Name
		}
		sh.templates[id] = name
	}
	return name
}

// configIn is config with what a list shares read once (see configShared).
func (vs views) configIn(tx store.Tx, c *store.Config, sh *configShared) (*ConfigView, error) {
	if sh.homes == nil {
		sh.homes = vs.homes()
	}
	v := &ConfigView{
		Name: c.Name, Description: c.Description, Owner: c.Owner, State: sh.homes.state(tx, c),
		Fenced: c.Fenced, FencePolicy: c.FencePolicy, LastError: c.LastError, Host: c.Host,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
		Kind: c.Kind, Lease: vs.configLease(tx, c.ID, sh),
	}
	if !sh.listed {
		v.Lease.Ladder = vs.ladderOf(tx, c)
		v.Egress = vs.egressOf(c)
	}
	v.Workspace, v.Owner = owned(sh.names, c.WorkspaceID, c.OwnerID, c.Owner)
	netNames := map[int64]string{}
	external := deploy.ExternalIPs(tx, c)
	for _, vm := range c.VMs {
		vv := VMView{id: vm.ID, Name: vm.Name, State: vm.State, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB,
			Template: sh.templateName(tx, vm.TemplateID), Hostname: seed.Hostname(vm.Hostname, vm.Name, c.Name), InstanceID: vm.InstanceID, Host: cmp.Or(vm.Host, c.Host)}
		for _, d := range vm.Disks {
			chain, err := sh.layers.chain(d.TopLayerID)
			if err != nil {
				return nil, fmt.Errorf("configuration %q VM %q disk %d: %w", c.Name, vm.Name, d.Index, err)
			}
			dv := DiskView{Index: d.Index, Path: vs.abs(chain[0].Path)}
			for _, l := range chain {
				dv.Chain = append(dv.Chain, vs.abs(l.Path))
			}
			vv.Disks = append(vv.Disks, dv)
		}
		for _, n := range vm.NICs {
			name, ok := netNames[n.NetworkID]
			if !ok {
				nw, err := tx.Networks().GetByID(n.NetworkID)
				if err != nil {
					return nil, err
				}
				name = nw.Name
				netNames[n.NetworkID] = name
			}
			nv := NICView{Index: n.Index, Network: name, MAC: n.MAC, IPMode: n.IPMode}
			if n.IP.IsValid() {
				nv.IP = n.IP.String()
			}
			if a, ok := external[n.ID]; ok {
				nv.ExternalIP = a.String()
			}
			vv.NICs = append(vv.NICs, nv)
		}
		v.VMs = append(v.VMs, vv)
	}
	return v, nil
}
