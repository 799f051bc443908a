package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

func (a configCmds) deploy() *cobra.Command {
	var (
		fenced      bool
		policy      string
		deployLease string
		host        string
		explain     bool
		spread      bool
		allow       []string
	)
	cmd := &cobra.Command{
		Use:   "deploy NAME [--fenced [--spread]] [--fence-policy block|out|in-out] [--allow CIDR[:PORT[/tcp|udp]]]... [--host H] [--explain]",
		Short: "Start a configuration's VMs, on their networks or behind a fence",
		Long: `Start one VM per VM of the configuration, and show it once they run.

Unfenced, the VMs sit on their networks with their own addresses; the deploy
is refused when another running VM (or a fence) uses one of them: deploy
fenced, or give the configuration its own addresses with config change-ips.

  --fenced               run the VMs on private copies of their networks,
                         each NIC reached through a new external address
  --fence-policy block   nothing crosses the fence
  --fence-policy out     the VMs reach outside; nothing outside reaches in
  --fence-policy in-out  both ways, through the external addresses (default)
  --allow CIDR[:PORT[/tcp|udp]]  (repeatable, with out or in-out) the VMs may
                         open connections only to these destinations, DNS
                         servers included; a port without a protocol means
                         TCP and UDP; at most 64. config show lists them and
                         counts the refused attempts

With several hosts the configuration runs on the host that fits it (free
memory and vCPUs) and already holds most of its disks' frozen layers, then
the one with most free memory; when that is not its home host it moves there
first (its tops and only the frozen layers that host lacks).

  --host H   consider only host H
  --explain  print every host's verdict (always printed when none fits)
  --spread   (with --fenced) place each VM on its own: its home host when it
             fits, else the host that fits it and holds most of its chain;
             the fence spans the hosts (a VXLAN per network, MTU reduced by
             the encapsulation), its router and external addresses on the
             home host. Unfenced networks do not span hosts`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			// The daemon judges the policy (fence.ParsePolicy): the flag
			// is sent as typed, and an unset one means its default.
			c, err := a.client.Configs().Deploy(cmd.Context(), args[0], wire.DeployRequest{Fenced: fenced, FencePolicy: policy, Allow: allow, DeployLease: deployLease, Host: host, Explain: explain, Spread: spread})
			if err != nil {
				return err
			}
			if c.Placement != nil && a.output != "json" {
				printPlacement(a.stdout, c.Placement)
			}
			return a.printConfig(c)
		}),
	}
	cmd.Flags().StringVar(&host, "host", "", "deploy on this host only")
	cmd.Flags().BoolVar(&explain, "explain", false, "print every host's verdict")
	cmd.Flags().BoolVar(&spread, "spread", false, "with --fenced: let the VMs run on several hosts")
	cmd.Flags().BoolVar(&fenced, "fenced", false, "run the VMs behind a fence")
	cmd.Flags().StringVar(&policy, "fence-policy", "", "with --fenced: block, out or in-out (default in-out)")
	cmd.Flags().StringArrayVar(&allow, "allow", nil, "with --fenced and policy out or in-out: a destination the VMs may reach, CIDR[:PORT[/tcp|udp]] (repeatable)")
	cmd.Flags().StringVar(&deployLease, "deploy-lease", "", "undeploy after this long: "+leaseHelp+" (default: the configuration's setting)")
	return cmd
}

// printPlacement prints where a deploy went and each host's verdict.
func printPlacement(w io.Writer, p *wire.Placement) {
	if len(p.VMs) > 0 {
		// A spread deploy: each VM's placement and the verdicts on it.
		for _, vm := range p.VMs {
			fmt.Fprintf(w, "VM %s: placed on %s\n", vm.VM, vm.Host)
			for _, v := range vm.Verdicts {
				fmt.Fprintln(w, "  "+v.Text)
			}
		}
		if p.Moved {
			fmt.Fprintf(w, "home %s (VMs' disks moved: %d bytes pulled)\n", p.Host, p.MovedBytes)
		}
		return
	}
	for _, v := range p.Verdicts {
		fmt.Fprintln(w, v.Text)
	}
	if p.Moved {
		fmt.Fprintf(w, "placed on %s (moved there: %d bytes pulled)\n", p.Host, p.MovedBytes)
	} else {
		fmt.Fprintf(w, "placed on %s\n", p.Host)
	}
}

func (a configCmds) move() *cobra.Command {
	var host string
	cmd := &cobra.Command{
		Use:   "move NAME --host H",
		Short: "Move an undeployed configuration to another host",
		Long: `Make host H the configuration's home: H pulls its writable tops from the
current home and the frozen layers of its chains that it lacks (by content
hash, from any host holding them), then the old home deletes its copies of
the tops. A deployed configuration does not move: undeploy it first, or
drain its host (host drain), which saves and resumes what runs.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if host == "" {
				return usagef("--host is required")
			}
			c, err := a.client.Configs().Move(cmd.Context(), args[0], wire.MoveRequest{Host: host})
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
	cmd.Flags().StringVar(&host, "host", "", "the host to move it to")
	return cmd
}

func (a configCmds) undeploy() *cobra.Command {
	var save, discard bool
	cmd := &cobra.Command{
		Use:   "undeploy NAME [--save-state|--discard-state]",
		Short: "Stop a configuration's VMs: power them off, or save their state",
		Long: `Stop the configuration's VMs and release what the deployment held (external
addresses, fence).

  --discard-state  power the VMs off (default)
  --save-state     suspend the VMs to state files; the next deploy resumes
                   them where they were (a spread deployment's VMs save on
                   their hosts, and each state goes home with its VM's
                   disks)`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if save && discard {
				return usagef("--save-state and --discard-state exclude each other")
			}
			c, err := a.client.Configs().Undeploy(cmd.Context(), args[0], wire.UndeployRequest{SaveState: save})
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
	cmd.Flags().BoolVar(&save, "save-state", false, "suspend the VMs; the next deploy resumes them")
	cmd.Flags().BoolVar(&discard, "discard-state", false, "power the VMs off (default)")
	return cmd
}
