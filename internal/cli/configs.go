package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// The help of --workspace: on a create, on a copy (clone, capture,
// checkout, archive, restore), on a list.
const (
	workspaceNewHelp  = `workspace it goes to ("ws" of organization default, or "org/ws"; default: your default workspace)`
	workspaceCopyHelp = `workspace it goes to ("ws" of organization default, or "org/ws"; default: the source's)`
	workspaceListHelp = `list only this workspace ("ws" of organization default, or "org/ws")`
)

// configCmds builds `stagehand config`: configurations, their clones, deployments, leases and shares. Its methods share the app's client, flags and output.
type configCmds struct{ *app }

func (a configCmds) command() *cobra.Command {
	list := lister[wire.Config]{
		use: "list [--workspace W]", short: "List configurations",
		flag: "workspace", flagHelp: workspaceListHelp,
		fetch: func(ctx context.Context, filter string) ([]wire.Config, error) {
			return a.client.Configs().ListIn(ctx, filter)
		},
		header: []any{"NAME", "WORKSPACE", "OWNER", "STATE", "HOST", "FENCED", "VMS", "DESCRIPTION"},
		row: func(c wire.Config) []any {
			return []any{c.Name, orDash(c.Workspace), orDash(c.Owner), c.State, orDash(c.Host), yesNo(c.Fenced), len(c.VMs), orDash(c.Description)}
		},
	}.command(a.app)
	return a.group("config", "Create, clone, deploy, undeploy, list, show and delete configurations",
		a.create(),
		list,
		showCommand(a.app, "show NAME", "Show a configuration: its VMs, NICs and disk chains", func(ctx context.Context, name string) (*wire.Config, error) {
			return a.client.Configs().Get(ctx, name)
		}, a.printConfig),
		argCommand(a.app, "delete NAME", "Delete an undeployed configuration and the layers only it used", func(ctx context.Context, name string) error {
			return a.client.Configs().Delete(ctx, name)
		}),
		a.clone(),
		a.lease(),
		a.deploy(),
		a.move(),
		a.undeploy(),
		a.share(), a.unshare(), a.shares(),
		&cobra.Command{
			Use:   "change-ips NAME",
			Short: "Give every pool NIC a new address (and clear manual ones)",
			Long: `Give every pool NIC of the configuration a new address from its network's
pool, and clear manual addresses until set again, so that the configuration
can run unfenced beside the configurations it was cloned from or to.`,
			Args: exactArgs("NAME"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				c, err := a.client.Configs().ChangeIPs(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.printConfig(c)
			}),
		},
		&cobra.Command{
			Use:   "set-ip NAME VM NIC IP|pool|dhcp",
			Short: "Set one NIC's address: a manual IP, a pool address or DHCP",
			Args:  exactArgs("NAME", "VM", "NIC", "IP|pool|dhcp"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				nic, err := indexArg("NIC", args[2])
				if err != nil {
					return err
				}
				ip, err := checkIPArg(args[3])
				if err != nil {
					return err
				}
				c, err := a.client.VMs().SetIP(cmd.Context(), args[0], args[1], nic, wire.SetIPRequest{IP: ip})
				if err != nil {
					return err
				}
				return a.printConfig(c)
			}),
		},
	)
}

func (a configCmds) create() *cobra.Command {
	var (
		vmFlags []string
		req     wire.ConfigRequest
	)
	cmd := &cobra.Command{
		Use:   "create NAME --vm VM=TEMPLATE[,net=NETWORK][,ip=pool|dhcp|IP]...",
		Short: "Create a configuration of VMs made from templates",
		Long: `Create a configuration. Each --vm adds one VM made from a template:

  --vm web=debian                      no NIC
  --vm web=debian,net=lan              one NIC, address from lan's pool
  --vm web=debian,net=lan,ip=dhcp      one NIC, DHCP
  --vm web=debian,net=lan,ip=10.0.0.5  one NIC, manual address`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			vms, err := parseVMFlags(vmFlags)
			if err != nil {
				return err
			}
			req.Name, req.VMs = args[0], vms
			if req.Owner == "" {
				req.Owner = a.deps.Getenv("USER")
			}
			c, err := a.client.Configs().Create(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
	f := cmd.Flags()
	f.StringArrayVar(&vmFlags, "vm", nil, "VM=TEMPLATE[,net=NETWORK][,ip=pool|dhcp|IP] (repeatable)")
	f.StringVar(&req.Description, "description", "", "description")
	f.StringVar(&req.Owner, "owner", "", "owner (default $USER)")
	f.StringVar(&req.StorageLease, "storage-lease", "", "storage lease: "+leaseHelp+" (default: the daemon's)")
	f.StringVar(&req.Workspace, "workspace", "", workspaceNewHelp)
	return cmd
}

func (a configCmds) clone() *cobra.Command {
	var (
		mode      string
		detach    bool
		withState bool
		lease     string
		workspace string
		fromSnap  string
	)
	cmd := &cobra.Command{
		Use:   "clone SRC NEW [--mode linked|full] [--from-snapshot S] [--with-state] [--detach] [--storage-lease 30d|never] [--workspace W]",
		Short: "Clone a configuration (linked: instant, copy-on-write; full: standalone copy)",
		Long: `Clone an undeployed configuration. The clone's VMs keep the source's networks,
IP modes and addresses (use change-ips to give it its own).

  --mode linked  (default) new copy-on-write layers over the source's disks;
                 takes about the same time whatever the disk size.
  --mode full    copies every disk into a new standalone base, as a job:
                 shows progress until it ends, or prints the job id with --detach.
  --with-state   (linked) the clone shares SRC's saved memory state: taken now
                 if SRC is deployed (its guests pause briefly), else the state
                 an undeploy --save-state left. The clone keeps SRC's MACs and
                 addresses; deploy it --fenced: its guests resume, not boot.`,
		Args: exactArgs("SRC", "NEW"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src, dst := args[0], args[1]
			if withState && (fromSnap != "" || mode != wire.CloneLinked) {
				return usagef("--with-state makes a linked clone of SRC as it is (no --mode full, no --from-snapshot)")
			}
			if fromSnap != "" {
				if mode != wire.CloneLinked || detach {
					return usagef("--from-snapshot makes a linked clone (no --mode full, no --detach)")
				}
				c, err := a.client.Snapshots().Clone(ctx, src, fromSnap, wire.CloneRequest{Name: dst, StorageLease: lease, Workspace: workspace})
				if err != nil {
					return err
				}
				return a.printConfig(c)
			}
			switch mode {
			case wire.CloneLinked:
				if detach {
					return usagef("--detach applies to --mode full only (a linked clone is immediate)")
				}
				c, err := a.client.Configs().LinkedClone(ctx, src, wire.CloneRequest{Name: dst, StorageLease: lease, Workspace: workspace, WithState: withState})
				if err != nil {
					return err
				}
				return a.printConfig(c)
			case wire.CloneFull:
				job, err := a.client.Configs().StartFullClone(ctx, src, wire.CloneRequest{Name: dst, StorageLease: lease, Workspace: workspace})
				if err != nil {
					return err
				}
				return a.jobThen(ctx, job, detach, func() error {
					c, err := a.client.Configs().Get(ctx, dst)
					if err != nil {
						return err
					}
					return a.printConfig(c)
				})
			default:
				return usagef("--mode %q is not linked or full", mode)
			}
		}),
	}
	cmd.Flags().StringVar(&mode, "mode", wire.CloneLinked, "clone mode: linked or full")
	cmd.Flags().BoolVar(&detach, "detach", false, "full clone: print the job id and return at once")
	cmd.Flags().StringVar(&lease, "storage-lease", "", "storage lease of the clone: "+leaseHelp)
	cmd.Flags().StringVar(&workspace, "workspace", "", workspaceCopyHelp)
	cmd.Flags().StringVar(&fromSnap, "from-snapshot", "", "linked clone of SRC as it was at this snapshot (SRC may be deployed)")
	cmd.Flags().BoolVar(&withState, "with-state", false, "share SRC's saved memory state: the clone resumes instead of booting, deployed --fenced only")
	return cmd
}

// indexArg parses a disk or NIC index argument.
func indexArg(what, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, usagef("%s %q is not an index (0, 1, ...)", what, s)
	}
	return n, nil
}

func (a *app) printConfig(c *wire.Config) error {
	return a.print(c, func(w io.Writer) {
		row(w, "Name:", c.Name)
		row(w, "State:", c.State)
		row(w, "Home host:", orDash(c.Host))
		fenced := yesNo(c.Fenced)
		if c.Fenced && c.FencePolicy != "" {
			fenced += " (" + c.FencePolicy + ")"
		}
		row(w, "Fenced:", fenced)
		printEgress(w, c)
		row(w, "Workspace:", orDash(c.Workspace))
		row(w, "Owner:", orDash(c.Owner))
		row(w, "Description:", orDash(c.Description))
		if c.LastError != "" {
			row(w, "Last error:", c.LastError)
		}
		row(w, "Created:", when(c.CreatedAt))
		printLease(w, c)
		row(w)
		row(w, "VM", "STATE", "HOST", "PID", "TEMPLATE", "CPUS", "MEMORY")
		for _, vm := range c.VMs {
			state := vm.State
			if vm.HasSavedState && vm.State != wire.VMSaved {
				state += " (saved state)"
			}
			pid := "-"
			if vm.PID > 0 {
				pid = strconv.Itoa(vm.PID)
			}
			row(w, vm.Name, state, orDash(vm.Host), pid, orDash(vm.Template), vm.CPUs, fmt.Sprintf("%d MiB", vm.MemoryMiB))
		}
		printIdentities(w, c)
		row(w)
		row(w, "VM", "NIC", "NETWORK", "MAC", "MODE", "IP", "EXTERNAL IP")
		for _, vm := range c.VMs {
			for _, n := range vm.NICs {
				row(w, vm.Name, n.Index, n.Network, n.MAC, n.IPMode, orDash(n.IP), orDash(n.ExternalIP))
			}
		}
		row(w)
		row(w, "VM", "DISK", "DEPTH", "TOP LAYER")
		for _, vm := range c.VMs {
			for _, d := range vm.Disks {
				row(w, vm.Name, d.Index, len(d.Chain), d.Path)
			}
		}
	})
}

// printStartedJob prints a detached job: its id alone in table mode, so
// scripts can capture it.
func (a *app) printStartedJob(j *wire.Job) error {
	if a.output == "json" {
		return writeJSON(a.stdout, j)
	}
	_, err := fmt.Fprintln(a.stdout, strings.TrimSpace(j.ID))
	return err
}
