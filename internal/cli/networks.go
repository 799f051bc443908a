package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// networkCmds builds `stagehand network`. Its methods share the app's client, flags and output.
type networkCmds struct{ *app }

func (a networkCmds) command() *cobra.Command {
	list := lister[wire.Network]{
		use: "list [--workspace W]", short: "List networks with their pool usage",
		flag: "workspace", flagHelp: workspaceListHelp,
		fetch: func(ctx context.Context, filter string) ([]wire.Network, error) {
			return a.client.Networks().ListIn(ctx, filter)
		},
		header: []any{"NAME", "WORKSPACE", "OWNER", "SUBNET", "GATEWAY", "POOLS", "USED"},
		row: func(n wire.Network) []any {
			return []any{n.Name, orDash(n.Workspace), orDash(n.Owner), n.Subnet, orDash(n.Gateway), strings.Join(n.Pools, ","), fmt.Sprintf("%d/%d", n.PoolUsed, n.PoolSize)}
		},
	}.command(a.app)
	return a.group("network", "Create, list, show and delete networks and their IP pools",
		a.create(),
		list,
		showCommand(a.app, "show NAME", "Show a network and who holds each of its addresses", func(ctx context.Context, name string) (*wire.Network, error) {
			return a.client.Networks().Get(ctx, name)
		}, a.printNetwork),
		argCommand(a.app, "delete NAME", "Delete a network no VM uses", func(ctx context.Context, name string) error {
			return a.client.Networks().Delete(ctx, name)
		}),
	)
}

func (a networkCmds) create() *cobra.Command {
	var req wire.NetworkRequest
	cmd := &cobra.Command{
		Use:   "create NAME --subnet CIDR [--gateway IP] --pool FIRST-LAST [--pool ...] [--dns IP]...",
		Short: "Create a network with an IP pool",
		Args:  exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			if err := checkNetworkFlags(&req); err != nil {
				return err
			}
			n, err := a.client.Networks().Create(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printNetwork(n)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Subnet, "subnet", "", "subnet in CIDR notation, e.g. 10.0.0.0/24")
	f.StringVar(&req.Gateway, "gateway", "", "gateway address (default: the subnet's first host)")
	f.StringArrayVar(&req.Pools, "pool", nil, "address range FIRST-LAST inside the subnet (repeatable)")
	f.StringArrayVar(&req.DNS, "dns", nil, "DNS server address (repeatable)")
	f.StringVar(&req.Workspace, "workspace", "", workspaceNewHelp)
	return cmd
}

// checkNetworkFlags checks the syntax of the addresses; the daemon checks
// that they fit together.
func checkNetworkFlags(req *wire.NetworkRequest) error {
	if req.Subnet == "" {
		return usagef("--subnet CIDR is required")
	}
	if _, err := netip.ParsePrefix(req.Subnet); err != nil {
		return usagef("--subnet %q is not a CIDR such as 10.0.0.0/24", req.Subnet)
	}
	if req.Gateway != "" {
		if _, err := netip.ParseAddr(req.Gateway); err != nil {
			return usagef("--gateway %q is not an IP address", req.Gateway)
		}
	}
	for _, p := range req.Pools {
		first, last, ok := strings.Cut(p, "-")
		_, err1 := netip.ParseAddr(first)
		_, err2 := netip.ParseAddr(last)
		if !ok || err1 != nil || err2 != nil {
			return usagef("--pool %q is not FIRST-LAST, e.g. 10.0.0.100-10.0.0.199", p)
		}
	}
	for _, d := range req.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return usagef("--dns %q is not an IP address", d)
		}
	}
	return nil
}

func (a networkCmds) printNetwork(n *wire.Network) error {
	return a.print(n, func(w io.Writer) {
		row(w, "Name:", n.Name)
		row(w, "Workspace:", orDash(n.Workspace))
		row(w, "Owner:", orDash(n.Owner))
		row(w, "Subnet:", n.Subnet)
		row(w, "Gateway:", orDash(n.Gateway))
		row(w, "DNS:", orDash(strings.Join(n.DNS, ", ")))
		row(w, "Pools:", strings.Join(n.Pools, ", "))
		row(w, "Pool used:", fmt.Sprintf("%d of %d", n.PoolUsed, n.PoolSize))
		row(w, "Created:", when(n.CreatedAt))
		row(w)
		row(w, "IP", "KIND", "POOL", "HELD BY")
		for _, u := range n.Usage {
			row(w, u.IP, u.Kind, yesNo(u.InPool), holders(u))
		}
	})
}

// holders says who holds an address: config/vm/nicN for each NIC of an
// internal address's family, the fence for an external one.
func holders(u wire.IPUsage) string {
	if u.Kind == wire.IPExternal || len(u.Holders) == 0 {
		return orDash(u.Holder)
	}
	parts := make([]string, len(u.Holders))
	for i, h := range u.Holders {
		parts[i] = fmt.Sprintf("%s/%s/nic%d", h.Config, h.VM, h.NIC)
		if h.VM == "" { // a configuration the caller may not see: "(hidden)"
			parts[i] = h.Config
		}
	}
	return strings.Join(parts, ", ")
}
