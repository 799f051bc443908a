package webui

import (
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
)

type networksData struct {
	Rows      []lab.NetworkView
	Actions   []Action
	Workspace string
	After     int64
}

// networksPage lists the networks the user may see with their pool use,
// and the create when allowed.
func (p *objectPages) networksPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, after, err := p.listFrame(r, "Networks", "networks")
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := networksData{Workspace: f.Workspace, After: after}
	ns, err := p.lab.Networks.List(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	for _, n := range ns {
		if inWorkspace(f.Workspace, n.Workspace) {
			d.Rows = append(d.Rows, n)
		}
	}
	sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].Name < d.Rows[j].Name })
	o := p.offers(ctx)
	o.add(auth.NetworkCreate, access.Ref{Kind: access.KindNetwork, Workspace: f.Workspace}, Action{
		Name: "network.create", Label: "New network", Method: http.MethodPost, Path: "/api/v1/networks",
		CLI:     "stagehand network create {name}",
		Confirm: "A network is an L2 segment with a subnet and a pool of addresses given to NICs.",
		Fields: []Field{
			{Name: "name", Label: "Name", Required: true},
			{Name: "subnet", Label: "Subnet (CIDR)", Required: true, Value: "10.0.0.0/24", Flag: "--subnet"},
			{Name: "gateway", Label: "Gateway (empty: the first address)", Flag: "--gateway"},
			{Name: "pools[0]", Label: "Pool FIRST-LAST", Required: true, Value: "10.0.0.10-10.0.0.99", Flag: "--pool"},
			{Name: "dns[0]", Label: "DNS server (optional)", Flag: "--dns"},
			workspaceField(f.Workspace),
		},
		Then: "/ui/networks/{name}",
	})
	if d.Actions, err = o.result(); err != nil {
		p.fail(w, r, err)
		return
	}
	f.Page = d
	p.render(w, r, "networks.html", f)
}

type networkData struct {
	N       *lab.NetworkView
	Grid    poolGrid
	Actions []Action
	After   int64
	// Library names the library entries among the holders (their
	// links lead to the library).
	Library map[string]bool
}

// poolGrid is a network's addresses drawn as cells: every address of its
// pools, and the held ones outside them.
type poolGrid struct {
	Cells []poolCell
	// Shown is false for a pool too large to draw address by address
	// (more than maxGridCells): only the held addresses are drawn.
	Whole                        bool
	Free, Held, Hidden, External int
	PoolSize, PoolUsed           int
	Truncated                    int // free addresses not drawn
}

// Cell states.
const (
	cellFree     = "free"
	cellHeld     = "held"     // by a family the user may see
	cellHidden   = "hidden"   // by a configuration the user may not see
	cellExternal = "external" // a fence's external address
)

type poolCell struct {
	IP      string
	Octet   string // the last part of the address, the cell's text
	State   string // cell*
	InPool  bool
	Gateway bool
	// Holder is who holds it: "config/vm/nicN, …" for a family,
	// "(hidden)" for a configuration the user may not see, the fence
	// for an external address.
	Holder string
}

// maxGridCells bounds the addresses drawn one by one.
const maxGridCells = 4096

// gridOf lays out n's addresses.
func gridOf(n *lab.NetworkView) poolGrid {
	g := poolGrid{PoolSize: n.PoolSize, PoolUsed: n.PoolUsed, Whole: n.PoolSize <= maxGridCells}
	held := map[string]lab.IPUsage{}
	for _, u := range n.Usage {
		held[u.IP] = u
	}
	seen := map[string]bool{}
	add := func(ip string, inPool bool) {
		if seen[ip] {
			return
		}
		seen[ip] = true
		c := poolCell{IP: ip, Octet: lastPart(ip), State: cellFree, InPool: inPool, Gateway: ip == n.Gateway}
		if u, ok := held[ip]; ok {
			c.State, c.Holder = holderOf(u)
		}
		switch c.State {
		case cellFree:
			g.Free++
		case cellHeld:
			g.Held++
		case cellHidden:
			g.Hidden++
		case cellExternal:
			g.External++
		}
		g.Cells = append(g.Cells, c)
	}
	if g.Whole {
		for _, p := range n.Pools {
			first, last, ok := strings.Cut(p, "-")
			a, err1 := netip.ParseAddr(first)
			b, err2 := netip.ParseAddr(last)
			if !ok || err1 != nil || err2 != nil {
				continue
			}
			for ip := a; ip.IsValid() && ip.Compare(b) <= 0; ip = ip.Next() {
				add(ip.String(), true)
			}
		}
	} else {
		g.Truncated = n.PoolSize - n.PoolUsed
	}
	for _, u := range n.Usage { // held outside the pools (manual, external), or all held of a huge pool
		add(u.IP, u.InPool)
	}
	sort.SliceStable(g.Cells, func(i, j int) bool {
		a, _ := netip.ParseAddr(g.Cells[i].IP)
		b, _ := netip.ParseAddr(g.Cells[j].IP)
		return a.Less(b)
	})
	return g
}

// holderOf says who holds a used address.
func holderOf(u lab.IPUsage) (state, holder string) {
	if u.Kind == "external" {
		return cellExternal, u.Holder
	}
	var names []string
	hidden := len(u.Holders) > 0
	for _, h := range u.Holders {
		if h.Config == lab.HiddenName {
			names = append(names, lab.HiddenName)
			continue
		}
		hidden = false
		names = append(names, h.Config+"/"+h.VM+"/nic"+strconv.Itoa(h.NIC))
	}
	if hidden {
		return cellHidden, lab.HiddenName
	}
	if len(names) == 0 {
		return cellHeld, u.Holder
	}
	return cellHeld, strings.Join(names, ", ")
}

// lastPart is an address's last octet (IPv4) or group (IPv6).
func lastPart(ip string) string {
	if i := strings.LastIndexAny(ip, ".:"); i >= 0 {
		return ip[i+1:]
	}
	return ip
}

// networkPage shows one network: its pool as a grid of addresses (free,
// held by which family, hidden, external) and the table of the held
// ones; delete when allowed.
func (p *objectPages) networkPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	n, err := readObject(r, p.lab, p.lab.Networks, auth.NetworkRead, access.KindNetwork, name)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if n == nil {
		p.fail(w, r, errdefs.NotFound("network %q not found", name))
		return
	}
	d := networkData{N: n, Grid: gridOf(n), Library: map[string]bool{}}
	if p.lab.Library != nil {
		es, err := p.lab.Library.List(ctx)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		for _, e := range es {
			d.Library[e.Name] = true
		}
	}
	if d.After, err = p.lab.latestEvent(ctx); err != nil {
		p.fail(w, r, err)
		return
	}
	o := p.offers(ctx)
	o.add(auth.NetworkDelete, access.Ref{Kind: access.KindNetwork, Name: name},
		deleteAction("network", name, objectPath("networks", name), "/ui/networks",
			"A network that NICs still use, or with addresses held, is refused."))
	if d.Actions, err = o.result(); err != nil {
		p.fail(w, r, err)
		return
	}
	p.show(w, r, "network.html", name, "networks", d)
}
