// Package apitest provides Fake, an in-memory stand-in for the lab behind
// the API, so that the api, client and cli tests can run a real HTTP server
// without disks, a store or QEMU. It mimics the lab's errors (not found,
// conflict) and deploy states, runs its full clones and consolidations as
// real jobs, and can serve an echo console (EchoConsole).
package apitest

import (
	"context"
	"fmt"
	"path"
	"sync"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
)

// Fake is an in-memory api.Lab. Its exported fields may be set before use.
type Fake struct {
	// Fail, when it returns an error for a method name (e.g. "GetConfig"),
	// makes that method return it.
	Fail func(method string) error
	// Gate, when non-nil, holds every job until it is closed (or the job is
	// cancelled), so tests can see a job running.
	Gate chan struct{}
	// Problems is what Doctor reports; repair marks repairable ones repaired.
	Problems []lab.Problem
	// Accel and AccelReason are what Doctor reports about acceleration
	// (New sets "tcg" and "fake lab").
	Accel, AccelReason string
	// ConsoleSocket is the unix socket VMConsole returns for a running VM
	// (see EchoConsole); empty makes consoles unavailable.
	ConsoleSocket string
	// SerialLog is the file VMLog returns for every VM; empty means no VM
	// has a log.
	SerialLog string

	mu        sync.Mutex
	jobs      *jobs.Manager
	templates map[string]*lab.TemplateView
	networks  map[string]*lab.NetworkView
	configs   map[string]*lab.ConfigView
	order     []string // configuration names in creation order
	nextIP    int
	nextMAC   int
	nextLayer int
	nextPID   int
	life      lifecycleState // library, archives, events (lifecycle.go)
}

// New returns an empty Fake. Close it to stop its jobs.
func New() *Fake {
	return &Fake{
		jobs:      jobs.NewManager(),
		templates: map[string]*lab.TemplateView{},
		networks:  map[string]*lab.NetworkView{},
		configs:   map[string]*lab.ConfigView{},

		Accel:       "tcg",
		AccelReason: "fake lab",
	}
}

// Close cancels the running jobs and waits for them.
func (f *Fake) Close() { f.jobs.Close() }

// Jobs returns the fake's job manager.
func (f *Fake) Jobs() *jobs.Manager { return f.jobs }

func (f *Fake) fail(method string) error {
	if f.Fail == nil {
		return nil
	}
	return f.Fail(method)
}

func (f *Fake) newLayerPath() string {
	f.nextLayer++
	return fmt.Sprintf("/var/lib/stagehand/layers/l-%04d.qcow2", f.nextLayer)
}

// ImportTemplate records a template with one base layer per disk.
func (f *Fake) ImportTemplate(ctx context.Context, spec lab.TemplateSpec) (*lab.TemplateView, error) {
	if err := f.fail("ImportTemplate"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if spec.Name == "" {
		return nil, errdefs.Invalid("template name is empty")
	}
	if len(spec.Disks) == 0 {
		return nil, errdefs.Invalid("template %q: at least one --disk is required", spec.Name)
	}
	if _, ok := f.templates[spec.Name]; ok {
		return nil, errdefs.Conflict("template %q already exists", spec.Name)
	}
	t := &lab.TemplateView{
		Name: spec.Name, Description: spec.Description,
		CPUs: max(spec.CPUs, 1), MemoryMiB: spec.MemoryMiB,
		Kernel: spec.Kernel, Initrd: spec.Initrd, Cmdline: spec.Cmdline,
		CreatedAt: time.Now().UTC(),
	}
	if t.MemoryMiB == 0 {
		t.MemoryMiB = 256
	}
	for range spec.Disks {
		t.Disks = append(t.Disks, lab.LayerView{Path: f.newLayerPath(), Frozen: true, VirtualSize: 1 << 30, ActualSize: 1 << 20, Template: spec.Name})
	}
	f.templates[spec.Name] = t
	return clone(t), nil
}

// ListTemplates returns the templates.
func (f *Fake) ListTemplates(ctx context.Context) ([]lab.TemplateView, error) {
	if err := f.fail("ListTemplates"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []lab.TemplateView
	for _, t := range f.templates {
		out = append(out, *clone(t))
	}
	return out, nil
}

// GetTemplate returns one template.
func (f *Fake) GetTemplate(ctx context.Context, name string) (*lab.TemplateView, error) {
	if err := f.fail("GetTemplate"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.templates[name]
	if !ok {
		return nil, errdefs.NotFound("template %q not found", name)
	}
	return clone(t), nil
}

// DeleteTemplate deletes a template.
func (f *Fake) DeleteTemplate(ctx context.Context, name string) error {
	if err := f.fail("DeleteTemplate"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.templates[name]; !ok {
		return errdefs.NotFound("template %q not found", name)
	}
	delete(f.templates, name)
	return nil
}

// CreateNetwork records a network; the fake hands out 10.0.0.10 upwards.
func (f *Fake) CreateNetwork(ctx context.Context, spec lab.NetworkSpec) (*lab.NetworkView, error) {
	if err := f.fail("CreateNetwork"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.networks[spec.Name]; ok {
		return nil, errdefs.Conflict("network %q already exists", spec.Name)
	}
	n := &lab.NetworkView{Name: spec.Name, Subnet: spec.Subnet, Gateway: spec.Gateway, Pools: spec.Pools, DNS: spec.DNS, PoolSize: 100, CreatedAt: time.Now().UTC()}
	f.networks[spec.Name] = n
	return clone(n), nil
}

// ListNetworks returns the networks.
func (f *Fake) ListNetworks(ctx context.Context) ([]lab.NetworkView, error) {
	if err := f.fail("ListNetworks"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []lab.NetworkView
	for name := range f.networks {
		out = append(out, *f.networkUsage(name))
	}
	return out, nil
}

// GetNetwork returns one network with the addresses the fake's NICs carry.
func (f *Fake) GetNetwork(ctx context.Context, name string) (*lab.NetworkView, error) {
	if err := f.fail("GetNetwork"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.networks[name]; !ok {
		return nil, errdefs.NotFound("network %q not found", name)
	}
	return f.networkUsage(name), nil
}

func (f *Fake) networkUsage(name string) *lab.NetworkView {
	n := clone(f.networks[name])
	byIP := map[string]int{}
	for _, cname := range f.order {
		for _, vm := range f.configs[cname].VMs {
			for _, nic := range vm.NICs {
				if nic.Network != name || nic.IP == "" {
					continue
				}
				i, ok := byIP[nic.IP]
				if !ok {
					i = len(n.Usage)
					byIP[nic.IP] = i
					n.Usage = append(n.Usage, lab.IPUsage{IP: nic.IP, Kind: "internal", InPool: nic.IPMode == "pool"})
				}
				n.Usage[i].Holders = append(n.Usage[i].Holders, lab.IPHolder{Config: cname, VM: vm.Name, NIC: nic.Index})
			}
		}
	}
	n.PoolUsed = len(n.Usage)
	return n
}

// DeleteNetwork deletes a network.
func (f *Fake) DeleteNetwork(ctx context.Context, name string) error {
	if err := f.fail("DeleteNetwork"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.networks[name]; !ok {
		return errdefs.NotFound("network %q not found", name)
	}
	delete(f.networks, name)
	return nil
}

func (f *Fake) newMAC() string {
	f.nextMAC++
	return fmt.Sprintf("52:54:00:00:%02x:%02x", f.nextMAC>>8&0xff, f.nextMAC&0xff)
}

func (f *Fake) poolIP() string {
	f.nextIP++
	return fmt.Sprintf("10.0.0.%d", 9+f.nextIP)
}

// CreateConfig records a configuration whose VMs have one delta per
// template disk and one NIC when a network is given.
func (f *Fake) CreateConfig(ctx context.Context, spec lab.ConfigSpec) (*lab.ConfigView, error) {
	if err := f.fail("CreateConfig"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.configs[spec.Name]; ok {
		return nil, errdefs.Conflict("configuration %q already exists", spec.Name)
	}
	now := time.Now().UTC()
	c := &lab.ConfigView{Name: spec.Name, Description: spec.Description, Owner: spec.Owner, State: stateUndeployed, CreatedAt: now, UpdatedAt: now}
	for _, vs := range spec.VMs {
		t, ok := f.templates[vs.Template]
		if !ok {
			return nil, errdefs.NotFound("template %q not found", vs.Template)
		}
		vm := lab.VMView{Name: vs.Name, State: lab.VMStateStopped, Template: t.Name, CPUs: t.CPUs, MemoryMiB: t.MemoryMiB}
		for i, base := range t.Disks {
			top := f.newLayerPath()
			vm.Disks = append(vm.Disks, lab.DiskView{Index: i, Path: top, Chain: []string{top, base.Path}})
		}
		if vs.Network != "" {
			if _, ok := f.networks[vs.Network]; !ok {
				return nil, errdefs.NotFound("network %q not found", vs.Network)
			}
			nic := lab.NICView{Network: vs.Network, MAC: f.newMAC()}
			switch vs.IP {
			case "", "pool":
				nic.IPMode, nic.IP = "pool", f.poolIP()
			case "dhcp":
				nic.IPMode = "dhcp"
			default:
				nic.IPMode, nic.IP = "manual", vs.IP
			}
			vm.NICs = append(vm.NICs, nic)
		}
		c.VMs = append(c.VMs, vm)
	}
	f.configs[c.Name] = c
	f.order = append(f.order, c.Name)
	return clone(c), nil
}

// ListConfigs returns the configurations in creation order.
func (f *Fake) ListConfigs(ctx context.Context) ([]lab.ConfigView, error) {
	if err := f.fail("ListConfigs"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []lab.ConfigView
	for _, name := range f.order {
		out = append(out, *clone(f.configs[name]))
	}
	return out, nil
}

// GetConfig returns one configuration.
func (f *Fake) GetConfig(ctx context.Context, name string) (*lab.ConfigView, error) {
	if err := f.fail("GetConfig"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.configs[name]
	if !ok {
		return nil, errdefs.NotFound("configuration %q not found", name)
	}
	return clone(c), nil
}

// DeleteConfig deletes a configuration.
func (f *Fake) DeleteConfig(ctx context.Context, name string) error {
	if err := f.fail("DeleteConfig"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.configs[name]
	if !ok {
		return errdefs.NotFound("configuration %q not found", name)
	}
	if c.State != stateUndeployed {
		return errdefs.Conflict("configuration %q is %s; undeploy it first", name, c.State)
	}
	delete(f.configs, name)
	for i, n := range f.order {
		if n == name {
			f.order = append(f.order[:i], f.order[i+1:]...)
			break
		}
	}
	return nil
}

// copyConfig makes dst from src with new MACs and the same IPs; linked
// gives each disk a delta over the source's top, otherwise a fresh base.
func (f *Fake) copyConfig(src, dst string, linked bool) (*lab.ConfigView, error) {
	s, ok := f.configs[src]
	if !ok {
		return nil, errdefs.NotFound("configuration %q not found", src)
	}
	if s.State != stateUndeployed {
		return nil, errdefs.Conflict("configuration %q is %s; only an undeployed configuration can be cloned", src, s.State)
	}
	if _, ok := f.configs[dst]; ok {
		return nil, errdefs.Conflict("configuration %q already exists", dst)
	}
	c := clone(s)
	c.Name = dst
	for i := range c.VMs {
		for j := range c.VMs[i].Disks {
			d := &c.VMs[i].Disks[j]
			top := f.newLayerPath()
			if linked {
				d.Chain = append([]string{top}, d.Chain...)
			} else {
				d.Chain = []string{top}
			}
			d.Path = top
		}
		for j := range c.VMs[i].NICs {
			c.VMs[i].NICs[j].MAC = f.newMAC()
		}
		// A clone of saved state starts powered off.
		c.VMs[i].State, c.VMs[i].HasSavedState = lab.VMStateStopped, false
	}
	f.configs[dst] = c
	f.order = append(f.order, dst)
	return clone(c), nil
}

// LinkedClone copies src into dst at once.
func (f *Fake) LinkedClone(ctx context.Context, src, dst string, _ lab.CreateOptions) (*lab.ConfigView, error) {
	if err := f.fail("LinkedClone"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.copyConfig(src, dst, true)
}

// StartFullClone copies src into dst in a job that reports 4 steps of
// progress (waiting on Gate when set).
func (f *Fake) StartFullClone(ctx context.Context, src, dst string, _ lab.CreateOptions) (jobs.Job, error) {
	if err := f.fail("StartFullClone"); err != nil {
		return jobs.Job{}, err
	}
	f.mu.Lock()
	_, okSrc := f.configs[src]
	_, okDst := f.configs[dst]
	f.mu.Unlock()
	if !okSrc {
		return jobs.Job{}, errdefs.NotFound("configuration %q not found", src)
	}
	if okDst {
		return jobs.Job{}, errdefs.Conflict("configuration %q already exists", dst)
	}
	return f.jobs.Start("full-clone", dst, func(ctx context.Context, progress func(done, total int64)) error {
		if err := f.work(ctx, progress); err != nil {
			return err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		_, err := f.copyConfig(src, dst, false)
		return err
	}), nil
}

// work reports progress in four steps, after Gate opens.
func (f *Fake) work(ctx context.Context, progress func(done, total int64)) error {
	const total = 4 << 20
	progress(0, total)
	if f.Gate != nil {
		select {
		case <-f.Gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for done := int64(1 << 20); done <= total; done += 1 << 20 {
		if err := ctx.Err(); err != nil {
			return err
		}
		progress(done, total)
	}
	return nil
}

// ChangeIPs gives every pool NIC a new address and clears manual ones.
func (f *Fake) ChangeIPs(ctx context.Context, name string) (*lab.ConfigView, error) {
	if err := f.fail("ChangeIPs"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.configs[name]
	if !ok {
		return nil, errdefs.NotFound("configuration %q not found", name)
	}
	for i := range c.VMs {
		for j := range c.VMs[i].NICs {
			n := &c.VMs[i].NICs[j]
			switch n.IPMode {
			case "pool":
				n.IP = f.poolIP()
			case "manual":
				n.IP = ""
			}
		}
	}
	return clone(c), nil
}

// SetIP sets one NIC's address or mode.
func (f *Fake) SetIP(ctx context.Context, config, vm string, nic int, ip string) (*lab.ConfigView, error) {
	if err := f.fail("SetIP"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.nic(config, vm, nic)
	if err != nil {
		return nil, err
	}
	switch ip {
	case "pool":
		n.IPMode, n.IP = "pool", f.poolIP()
	case "dhcp":
		n.IPMode, n.IP = "dhcp", ""
	default:
		n.IPMode, n.IP = "manual", ip
	}
	return clone(f.configs[config]), nil
}

func (f *Fake) vm(config, vm string) (*lab.VMView, error) {
	c, ok := f.configs[config]
	if !ok {
		return nil, errdefs.NotFound("configuration %q not found", config)
	}
	for i := range c.VMs {
		if c.VMs[i].Name == vm {
			return &c.VMs[i], nil
		}
	}
	return nil, errdefs.NotFound("VM %q not found in configuration %q", vm, config)
}

func (f *Fake) nic(config, vm string, index int) (*lab.NICView, error) {
	v, err := f.vm(config, vm)
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= len(v.NICs) {
		return nil, errdefs.NotFound("VM %q of %q has no NIC %d", vm, config, index)
	}
	return &v.NICs[index], nil
}

func (f *Fake) disk(config, vm string, index int) (*lab.DiskView, error) {
	v, err := f.vm(config, vm)
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= len(v.Disks) {
		return nil, errdefs.NotFound("VM %q of %q has no disk %d", vm, config, index)
	}
	return &v.Disks[index], nil
}

// DiskChain describes a disk's layers; all but the top are frozen.
func (f *Fake) DiskChain(ctx context.Context, config, vm string, disk int) ([]lab.LayerView, error) {
	if err := f.fail("DiskChain"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.disk(config, vm, disk)
	if err != nil {
		return nil, err
	}
	var out []lab.LayerView
	for i, p := range d.Chain {
		l := lab.LayerView{ID: int64(i + 1), Path: p, Frozen: i > 0, VirtualSize: 1 << 30, ActualSize: 196608}
		if i == len(d.Chain)-1 {
			l.ActualSize = 1 << 20
			for _, t := range f.templates {
				for _, b := range t.Disks {
					if b.Path == path.Clean(p) {
						l.Template = t.Name
					}
				}
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// StartConsolidate replaces a disk's chain by one base, in a job.
func (f *Fake) StartConsolidate(ctx context.Context, config, vm string, disk int) (jobs.Job, error) {
	if err := f.fail("StartConsolidate"); err != nil {
		return jobs.Job{}, err
	}
	f.mu.Lock()
	_, err := f.disk(config, vm, disk)
	f.mu.Unlock()
	if err != nil {
		return jobs.Job{}, err
	}
	subject := fmt.Sprintf("%s/%s/disk%d", config, vm, disk)
	return f.jobs.Start("consolidate", subject, func(ctx context.Context, progress func(done, total int64)) error {
		if err := f.work(ctx, progress); err != nil {
			return err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		d, err := f.disk(config, vm, disk)
		if err != nil {
			return err
		}
		top := f.newLayerPath()
		d.Path, d.Chain = top, []string{top}
		return nil
	}), nil
}

// Doctor reports Problems; with repair it marks the repairable ones repaired.
func (f *Fake) Doctor(ctx context.Context, repair bool) (*lab.DoctorReport, error) {
	if err := f.fail("Doctor"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rep := &lab.DoctorReport{Checked: f.nextLayer, Accel: f.Accel, AccelReason: f.AccelReason}
	var remaining []lab.Problem
	for _, p := range f.Problems {
		if repair && p.Repairable {
			p.Repaired = true
		} else {
			remaining = append(remaining, p)
		}
		rep.Problems = append(rep.Problems, p)
	}
	if repair {
		f.Problems = remaining
	}
	return rep, nil
}

// clone deep-copies a view, so callers never share the fake's state.
func clone[T any](v *T) *T {
	c := cloneValue(*v)
	return &c
}

func cloneValue[T any](v T) T {
	switch x := any(v).(type) {
	case lab.ConfigView:
		vms := make([]lab.VMView, len(x.VMs))
		for i, vm := range x.VMs {
			vm.Disks = append([]lab.DiskView(nil), vm.Disks...)
			for j := range vm.Disks {
				vm.Disks[j].Chain = append([]string(nil), vm.Disks[j].Chain...)
			}
			vm.NICs = append([]lab.NICView(nil), vm.NICs...)
			vms[i] = vm
		}
		x.VMs = vms
		return any(x).(T)
	case lab.TemplateView:
		x.Disks = append([]lab.LayerView(nil), x.Disks...)
		return any(x).(T)
	case lab.NetworkView:
		x.Usage = append([]lab.IPUsage(nil), x.Usage...)
		x.Pools = append([]string(nil), x.Pools...)
		x.DNS = append([]string(nil), x.DNS...)
		return any(x).(T)
	}
	return v
}
