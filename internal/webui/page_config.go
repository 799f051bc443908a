package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// configData is the configuration page: every part of it, each also
// served alone (configPart) for live updates.
type configData struct {
	C       *lab.ConfigView
	Actions []Action
	VMs     []vmRow
	Fence   []fenceRow
	Disks   diskTree
	Snaps   snapshotPart
	// History is the page of the configuration's events asked by
	// ?before= (the newest without it).
	History historyPage
	// After is the newest event's id: the page's event stream starts
	// after it.
	After int64
	// Console: the user may open the VMs' consoles.
	Console bool
}

// vmRow is one VM with what its row links to.
type vmRow struct {
	lab.VMView
	ConsoleURL string // the console page; "" when not offered
	ScreenURL  string // the thumbnail's source (API); "" when not running
}

// fenceRow is one NIC of the fence map.
type fenceRow struct {
	VM       string
	NIC      lab.NICView
	Policy   string
	Deployed bool
	// Actions: the NIC's own (config.set-ip), when the user may edit.
	Actions []Action
}

// configParts are the parts of the page served alone, by name: each is a
// template of config.html named "part-NAME".
var configParts = map[string]bool{"summary": true, "vms": true, "disks": true, "snapshots": true, "history": true}

// configPage shows one configuration. An invisible one is 404, as in the
// API.
func (p *configPages) configPage(w http.ResponseWriter, r *http.Request) {
	d, err := p.configData(r, "")
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.show(w, r, "config.html", d.C.Name, "configs", d)
}

// configPart answers one part of the page, for a live update.
func (p *configPages) configPart(w http.ResponseWriter, r *http.Request) {
	part := r.PathValue("part")
	if !configParts[part] {
		p.fail(w, r, errdefs.NotFound("no part %q of a configuration page", part))
		return
	}
	d, err := p.configData(r, part)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.fragment(w, r, "config.html", "part-"+part, d)
}

// configData reads what the page (or only its part; "" for all) shows,
// as the signed-in user.
func (p *configPages) configData(r *http.Request, part string) (*configData, error) {
	ctx := r.Context()
	name := r.PathValue("name")
	ref := access.Ref{Kind: access.KindConfig, Name: name}
	if err := p.lab.check(ctx, auth.ConfigRead, ref); err != nil {
		return nil, err
	}
	c, err := p.lab.Configs.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if c.Kind == store.KindLibrary {
		return nil, errdefs.NotFound("configuration %q not found (it is a library entry)", name)
	}
	d := &configData{C: c}
	all := part == ""
	if all || part == "summary" {
		if d.Actions, err = p.configActions(ctx, c); err != nil {
			return nil, err
		}
	}
	if all || part == "vms" {
		if d.Console, err = p.lab.allowed(ctx, auth.ConfigConsole, ref); err != nil {
			return nil, err
		}
		setIP, err := p.lab.allowed(ctx, auth.ConfigEdit, ref)
		if err != nil {
			return nil, err
		}
		setIP = setIP && (c.State == "undeployed" || c.State == "failed")
		for _, v := range c.VMs {
			row := vmRow{VMView: v}
			base := "/configs/" + url.PathEscape(c.Name) + "/vms/" + url.PathEscape(v.Name)
			if d.Console {
				row.ConsoleURL = "/ui" + base + "/console"
				if v.State == "running" {
					row.ScreenURL = "/api/v1" + base + "/screen.png"
				}
			}
			d.VMs = append(d.VMs, row)
			for _, n := range v.NICs {
				f := fenceRow{VM: v.Name, NIC: n, Policy: c.FencePolicy, Deployed: c.State == "deployed"}
				if setIP {
					f.Actions = []Action{setIPAction(c.Name, v.Name, n)}
				}
				d.Fence = append(d.Fence, f)
			}
		}
	}
	if all || part == "disks" {
		if d.Disks, err = p.diskTree(ctx, c); err != nil {
			return nil, err
		}
	}
	if all || part == "snapshots" {
		if d.Snaps, err = p.snapshotPart(ctx, c); err != nil {
			return nil, err
		}
	}
	if all || part == "history" {
		before, err := historyBefore(r)
		if err != nil {
			return nil, err
		}
		if d.History, d.After, err = p.lab.history(ctx, lab.ObjectConfig, c.Name, before); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// historyBefore is the history page's cursor, ?before= (an event id; 0
// when absent: the newest events).
func historyBefore(r *http.Request) (int64, error) {
	s := r.URL.Query().Get("before")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errdefs.Invalid("before %q is not an event id", s)
	}
	return n, nil
}

// setIPAction sets one NIC's address, as `config set-ip`: an address of
// its network, "pool" (a new one from the pool) or "dhcp".
func setIPAction(config, vm string, n lab.NICView) Action {
	idx := fmt.Sprint(n.Index)
	ip := n.IPMode
	if ip != "pool" && ip != "dhcp" {
		ip = n.IP
	}
	return Action{
		Name: "config.set-ip", Label: "Set IP", Method: http.MethodPut, Key: vm + "-" + idx,
		Path: "/api/v1/configs/" + url.PathEscape(config) + "/vms/" + url.PathEscape(vm) + "/nics/" + idx + "/ip",
		CLI:  "stagehand config set-ip " + shellQuote(config) + " " + shellQuote(vm) + " " + idx + " {ip}",
		Confirm: "Give NIC " + idx + " of " + vm + " (network " + n.Network + ") a new address: pool takes a free one from the network's pool, " +
			"dhcp leaves it to the guest, or type an address of the network. Only an undeployed configuration changes addresses.",
		Fields: []Field{{Name: "ip", Label: "pool, dhcp or an address", Required: true, Value: ip}},
	}
}

// configActions are the actions the user may do on c in its state.
func (p *configPages) configActions(ctx context.Context, c *lab.ConfigView) ([]Action, error) {
	name := c.Name
	ref := access.Ref{Kind: access.KindConfig, Name: name}
	api := "/api/v1/configs/" + url.PathEscape(name)
	q := shellQuote(name)
	undeployed := c.State == "undeployed" || c.State == "failed"
	deployed := c.State == "deployed"
	o := p.offers(ctx)
	if undeployed {
		o.add(auth.ConfigDeploy, ref, Action{
			Name: "config.deploy", Label: "Deploy", Method: http.MethodPost, Path: api + "/deploy",
			CLI:     "stagehand config deploy " + q,
			Confirm: "Start the VMs of " + name + ". Fenced, they run behind a router with new external addresses, beside their clones.",
			Fields: []Field{
				{Name: "fenced", Label: "Fenced", Kind: FieldBool, Flag: "--fenced"},
				{Name: "fence_policy", Label: "Fence policy", Kind: FieldSelect, Options: []string{"in-out", "out", "block"},
					Value: "in-out", Flag: "--fence-policy", Requires: "fenced",
					Help: "in-out: both ways through the external IPs; out: the VMs reach outside only; block: nothing crosses"},
				{Name: "deploy_lease", Label: "Deployment lease (e.g. 4h, never; empty keeps the setting)", Flag: "--deploy-lease"},
			},
		})
	}
	if deployed {
		o.add(auth.ConfigUndeploy, ref, Action{
			Name: "config.undeploy", Label: "Undeploy", Method: http.MethodPost, Path: api + "/undeploy",
			CLI:     "stagehand config undeploy " + q,
			Confirm: "Stop the VMs of " + name + ". Saving their state lets the next deploy resume them; discarding powers them off.",
			Fields: []Field{
				{Name: "save_state", Label: "Save the VMs' state", Kind: FieldBool, Value: "true", Flag: "--save-state", FlagOff: "--discard-state"},
			},
		})
		o.add(auth.ConfigEdit, ref, Action{
			Name: "config.lease.deploy", Label: "Extend deployment", Method: http.MethodPost, Path: api + "/lease",
			CLI:     "stagehand config lease " + q,
			Confirm: "Give the deployment a new lease, counted from now.",
			Fields:  []Field{{Name: "deploy", Label: "Deployment lease (e.g. 4h, never)", Value: "4h", Required: true, Flag: "--deploy"}},
		})
	}
	o.add(auth.ConfigClone, ref, Action{
		Name: "config.clone", Label: "Clone", Method: http.MethodPost, Path: api + "/clone",
		CLI:     "stagehand config clone " + q + " {name}",
		Confirm: "A linked clone shares " + name + "'s disks (instant, small); a full clone copies them (a job, independent). Only an undeployed configuration can be cloned.",
		Fields: []Field{
			{Name: "name", Label: "New name", Required: true, Value: name + "-2"},
			{Name: "mode", Label: "Mode", Kind: FieldSelect, Options: []string{"linked", "full"}, Value: "linked", Flag: "--mode"},
		},
		Then: "/ui/configs/{name}",
	})
	if undeployed {
		o.add(auth.ConfigEdit, ref, Action{
			Name: "config.change-ips", Label: "Change IPs", Method: http.MethodPost, Path: api + "/change-ips",
			CLI:     "stagehand config change-ips " + q,
			Confirm: "Give every pool NIC of " + name + " a new address from its network's pool (manual addresses are cleared), so it can run unfenced beside its family.",
		})
	}
	o.add(auth.ConfigEdit, ref, Action{
		Name: "config.lease.storage", Label: "Extend storage", Method: http.MethodPost, Path: api + "/lease",
		CLI:     "stagehand config lease " + q,
		Confirm: "Give " + name + " a new storage lease, counted from now.",
		Fields:  []Field{{Name: "storage", Label: "Storage lease (e.g. 30d, never)", Value: "30d", Required: true, Flag: "--storage"}},
	})
	if undeployed {
		o.add(auth.LibraryCapture, ref, Action{
			Name: "config.capture", Label: "Capture", Method: http.MethodPost, Path: "/api/v1/library",
			CLI:     "stagehand library capture " + q + " {name}",
			Confirm: "Copy " + name + " into the library, read-only (a linked clone: small and instant).",
			Fields: []Field{
				{Name: "config", Kind: FieldHidden, Value: name},
				{Name: "name", Label: "Library entry name", Required: true, Value: name + "-lib"},
			},
		})
		o.add(auth.ArchiveCreate, ref, Action{
			Name: "config.archive", Label: "Archive", Method: http.MethodPost, Path: "/api/v1/archives",
			CLI:     "stagehand archive create " + q + " {name}",
			Confirm: "Copy " + name + " into archive storage, consolidated and portable (a job).",
			Fields: []Field{
				{Name: "config", Kind: FieldHidden, Value: name},
				{Name: "name", Label: "Archive name", Required: true, Value: name + "-archive"},
			},
		})
	}
	o.add(auth.ConfigShare, ref, Action{
		Name: "config.share", Label: "Share", Method: http.MethodPost, Path: api + "/shares",
		CLI:     "stagehand config share " + q,
		Confirm: "Let a user or a group (group:ORG/NAME) use " + name + ".",
		Fields: []Field{
			{Name: "with", Label: "User or group:ORG/NAME", Required: true, Flag: "--with"},
			{Name: "level", Label: "Level", Kind: FieldSelect, Options: []string{"read", "console", "change", "full"}, Value: "read", Flag: "--level",
				Help: "read: see it; console: also its consoles; change: also deploy and edit; full: also delete and share"},
		},
	})
	if undeployed {
		o.add(auth.ConfigDelete, ref, Action{
			Name: "config.delete", Label: "Delete", Method: http.MethodDelete, Path: api, Danger: true,
			CLI:     "stagehand config delete " + q,
			Confirm: "Delete " + name + " and its VMs' disks. Layers its clones or library entries still build on are kept. This cannot be undone.",
			Fields:  []Field{{Name: "confirm", Label: "Type the name to confirm", Kind: FieldConfirm, Value: name, Required: true}},
			Then:    "/ui/configs",
		})
	}
	return o.result()
}

// diskTree is the configuration's disk layers drawn as a tree, bases at
// the top, each VM disk's writable top at the bottom.
type diskTree struct {
	Nodes         []diskNode
	Edges         []diskEdge
	Width, Height int
	// Frees is the bytes deleting the configuration alone would free
	// (the cleanup view's count: layers others build on are kept).
	Frees int64
}

type diskNode struct {
	lab.LayerView
	X, Y     int
	Label    string   // template name or file name
	Disks    []string // "vm1 disk 0": the disks whose top this is
	SharedBy []string // other configurations and library entries reading it
	Freed    bool     // deleting the configuration would release it
}

type diskEdge struct{ X1, Y1, X2, Y2 int }

// Drawing sizes of the tree, in SVG units.
const (
	nodeW, nodeH = 210, 58
	gapX, gapY   = 16, 30
	treeMargin   = 4
)

// diskTree reads the chain of every disk of c and lays the layers out as
// a tree: layers shared by several disks of c appear once. SharedBy names
// the other configurations and library entries the user may see whose
// chains hold the layer.
func (p *configPages) diskTree(ctx context.Context, c *lab.ConfigView) (diskTree, error) {
	type node struct {
		diskNode
		parent   string
		children []string
	}
	nodes := map[string]*node{}
	var roots []string
	for _, v := range c.VMs {
		for _, dk := range v.Disks {
			chain, err := p.lab.Configs.DiskChain(ctx, c.Name, v.Name, dk.Index)
			if err != nil {
				return diskTree{}, fmt.Errorf("disk chain of %s/%s disk %d: %w", c.Name, v.Name, dk.Index, err)
			}
			for i, l := range chain {
				n, seen := nodes[l.Path]
				if !seen {
					n = &node{diskNode: diskNode{LayerView: l, Label: l.Template}}
					if n.Label == "" {
						n.Label = baseName(l.Path)
					}
					nodes[l.Path] = n
				}
				if i == 0 {
					n.Disks = append(n.Disks, fmt.Sprintf("%s disk %d", v.Name, dk.Index))
				}
				if i+1 < len(chain) {
					parent := chain[i+1].Path
					if n.parent == "" {
						n.parent = parent
					}
				} else if !seen {
					roots = append(roots, l.Path)
				}
			}
		}
	}
	for p, n := range nodes {
		if n.parent != "" {
			if parent, ok := nodes[n.parent]; ok {
				parent.children = append(parent.children, p)
			}
		}
	}
	// Who else reads each layer: the chains of the configurations and
	// library entries the user may see.
	others, err := p.lab.Configs.List(ctx)
	if err != nil {
		return diskTree{}, err
	}
	if p.lab.Library != nil {
		lib, err := p.lab.Library.List(ctx)
		if err != nil {
			return diskTree{}, err
		}
		others = append(others, lib...)
	}
	for _, o := range others {
		if o.Name == c.Name {
			continue
		}
		seen := map[string]bool{}
		for _, v := range o.VMs {
			for _, dk := range v.Disks {
				for _, p := range dk.Chain {
					if n, ok := nodes[p]; ok && !seen[p] {
						seen[p] = true
						label := o.Name
						if o.Kind == store.KindLibrary {
							label = "library " + o.Name
						}
						n.SharedBy = append(n.SharedBy, label)
					}
				}
			}
		}
	}
	// What a delete frees, by the lab's rule (shared layers are kept).
	var frees int64
	if p.lab.Cleanup != nil {
		sp, err := p.lab.Cleanup.Space(ctx, c.Name)
		if err != nil {
			return diskTree{}, err
		}
		freed := map[int64]bool{}
		for _, l := range sp.Layers {
			freed[l.ID] = true
		}
		for _, n := range nodes {
			n.Freed = freed[n.ID]
		}
		frees = sp.Frees
	}
	// Lay out: leaves left to right in a depth-first walk, a parent
	// centred over its children.
	t := diskTree{Frees: frees}
	leaf := 0
	maxDepth := 0
	var place func(p string, depth int) int
	place = func(p string, depth int) int {
		n := nodes[p]
		sort.Strings(n.children)
		sort.Strings(n.SharedBy)
		n.Y = treeMargin + depth*(nodeH+gapY)
		maxDepth = max(maxDepth, depth)
		if len(n.children) == 0 {
			n.X = treeMargin + leaf*(nodeW+gapX)
			leaf++
		} else {
			first, last := 0, 0
			for i, ch := range n.children {
				x := place(ch, depth+1)
				if i == 0 {
					first = x
				}
				last = x
			}
			n.X = (first + last) / 2
		}
		return n.X
	}
	sort.Strings(roots)
	for _, r := range roots {
		place(r, 0)
	}
	var paths []string
	for p := range nodes {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		a, b := nodes[paths[i]], nodes[paths[j]]
		if a.Y != b.Y {
			return a.Y < b.Y
		}
		return a.X < b.X
	})
	for _, p := range paths {
		n := nodes[p]
		t.Nodes = append(t.Nodes, n.diskNode)
		if parent, ok := nodes[n.parent]; ok {
			t.Edges = append(t.Edges, diskEdge{X1: parent.X + nodeW/2, Y1: parent.Y + nodeH, X2: n.X + nodeW/2, Y2: n.Y})
		}
	}
	t.Width = 2*treeMargin + max(leaf, 1)*(nodeW+gapX) - gapX
	t.Height = 2*treeMargin + (maxDepth+1)*(nodeH+gapY) - gapY
	return t, nil
}

// baseName is the last element of a path.
func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}
