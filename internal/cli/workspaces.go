package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
	"stagehand/internal/client"
)

// workspaceRefHelp says how the commands name a workspace or a group.
const workspaceRefHelp = "ORG/NAME, or NAME for one of organization default"

// orgCmds builds `stagehand org`. Its methods share the app's client, flags and output.
type orgCmds struct{ *app }

func (a orgCmds) command() *cobra.Command {
	return a.group("org", "Create and list organizations and name their administrators",
		&cobra.Command{
			Use:   "create NAME",
			Short: "Create an organization (with its shared workspace main)",
			Args:  exactArgs("NAME"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				o, err := a.client.Orgs().Create(cmd.Context(), wire.OrgRequest{Name: args[0]})
				if err != nil {
					return err
				}
				return a.printOrgs([]wire.Org{*o}, o)
			}),
		},
		&cobra.Command{
			Use:   "list",
			Short: "List organizations with their administrators, workspaces and groups",
			Args:  exactArgs(),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				orgs, err := a.client.Orgs().List(cmd.Context())
				if err != nil {
					return err
				}
				return a.printOrgs(orgs, orgs)
			}),
		},
		memberCommand(a.app, "add-admin ORG USER", "Make a user an administrator of an organization", func(ctx context.Context, of, user string) error {
			return a.client.Orgs().AddAdmin(ctx, of, user)
		}, "%s administers organization %s."),
		memberCommand(a.app, "remove-admin ORG USER", "Remove a user from an organization's administrators", func(ctx context.Context, of, user string) error {
			return a.client.Orgs().RemoveAdmin(ctx, of, user)
		}, "%s no longer administers organization %s."),
	)
}

func (a orgCmds) printOrgs(orgs []wire.Org, v any) error {
	return a.print(v, func(w io.Writer) {
		row(w, "NAME", "ADMINS", "WORKSPACES", "GROUPS", "CREATED")
		for _, o := range orgs {
			row(w, o.Name, orDash(strings.Join(o.Admins, ",")), orDash(strings.Join(o.Workspaces, ",")),
				orDash(strings.Join(o.Groups, ",")), when(o.CreatedAt))
		}
	})
}

// done reports a change that answers nothing: one line, or with -o json
// {"done": "..."} so scripts get JSON from every command.
func (a *app) done(msg string) error {
	if a.output == "json" {
		return writeJSON(a.stdout, map[string]string{"done": msg})
	}
	fmt.Fprintln(a.stdout, printable(msg))
	return nil
}

// workspaceCmds builds `stagehand workspace`: workspaces, their members and quotas. Its methods share the app's client, flags and output.
type workspaceCmds struct{ *app }

func (a workspaceCmds) command() *cobra.Command {
	var kind string
	create := &cobra.Command{
		Use:   "create WORKSPACE [--kind shared|private]",
		Short: "Create a workspace (" + workspaceRefHelp + ")",
		Args:  exactArgs("WORKSPACE"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			o, n := client.SplitRef(args[0])
			ws, err := a.client.Workspaces().Create(cmd.Context(), wire.WorkspaceRequest{Org: o, Name: n, Kind: kind})
			if err != nil {
				return err
			}
			return a.printWorkspace(ws)
		}),
	}
	create.Flags().StringVar(&kind, "kind", wire.WorkspaceShared, "shared (members see each other's objects) or private (each sees their own)")
	list := lister[wire.Workspace]{
		use: "list [--org ORG]", short: "List workspaces",
		flag: "org", flagHelp: "only the workspaces of this organization",
		fetch: func(ctx context.Context, filter string) ([]wire.Workspace, error) {
			return a.client.Workspaces().List(ctx, filter)
		},
		header: []any{"WORKSPACE", "KIND", "CREATED"},
		row:    func(x wire.Workspace) []any { return []any{x.Org + "/" + x.Name, x.Kind, when(x.CreatedAt)} },
	}.command(a.app)
	return a.group("workspace", "Create, list, show and delete workspaces, their members and quotas",
		create, list,
		showCommand(a.app, "show WORKSPACE", "Show a workspace: members with roles, quota and usage", func(ctx context.Context, name string) (*wire.Workspace, error) {
			return a.client.Workspaces().Get(ctx, name)
		}, a.printWorkspace),
		argCommand(a.app, "delete WORKSPACE", "Delete a workspace that holds no object", func(ctx context.Context, name string) error {
			return a.client.Workspaces().Delete(ctx, name)
		}),
		a.addMember(),
		memberCommand(a.app, "remove-member WORKSPACE USER", "Remove a user from a workspace", func(ctx context.Context, of, user string) error {
			return a.client.Workspaces().RemoveMember(ctx, of, user)
		}, "%s is no longer a member of %s."),
		a.setQuota(),
		a.leasePolicy(),
	)
}

func (a workspaceCmds) addMember() *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "add-member WORKSPACE USER --role ROLE",
		Short: "Add a user to a workspace with a role, or change their role",
		Long: `Add a user to a workspace with a role, or change the role they have there.
Roles, strongest first: admin, template-creator, author, user, console-only,
viewer.`,
		Args: exactArgs("WORKSPACE", "USER"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if role == "" {
				return usagef("--role is required: admin, template-creator, author, user, console-only or viewer")
			}
			if err := a.client.Workspaces().AddMember(cmd.Context(), args[0], wire.MemberRequest{User: args[1], Role: role}); err != nil {
				return err
			}
			return a.done(fmt.Sprintf("%s is a member of %s with role %s.", args[1], args[0], role))
		}),
	}
	cmd.Flags().StringVar(&role, "role", "", "admin, template-creator, author, user, console-only or viewer")
	return cmd
}

func (a workspaceCmds) setQuota() *cobra.Command {
	var user string
	var q wire.QuotaLimits
	cmd := &cobra.Command{
		Use:   "set-quota (WORKSPACE | --user USER) [--stored-vms N] [--deployed-vms N] [--vcpus N] [--memory-mib N] [--disk-gib N]",
		Short: "Set the quota of a workspace, or of a user (0: no limit; all 0 removes it)",
		Long: `Set the quota of a workspace (the objects in it) or, with --user, of a user
(the objects they own, in any workspace). Every limit not given is 0: no
limit. Operations that would exceed a limit are refused, naming the quota,
the use and the limit.`,
		Args: rangeArgs(nil, "WORKSPACE"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			req := wire.QuotaRequest{QuotaLimits: q}
			switch {
			case len(args) == 1 && user != "":
				return usagef("give WORKSPACE or --user USER, not both")
			case len(args) == 1:
				o, n := client.SplitRef(args[0])
				req.Scope, req.Target = wire.QuotaWorkspace, o+"/"+n
			case user != "":
				req.Scope, req.Target = wire.QuotaUser, user
			default:
				return usagef("give WORKSPACE or --user USER")
			}
			for name, v := range map[string]int64{"--stored-vms": q.StoredVMs, "--deployed-vms": q.DeployedVMs,
				"--vcpus": q.VCPUs, "--memory-mib": q.MemoryMiB, "--disk-gib": q.DiskGiB} {
				if v < 0 {
					return usagef("%s %d: a limit is 0 (none) or more", name, v)
				}
			}
			got, err := a.client.Workspaces().SetQuota(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(got, func(w io.Writer) {
				row(w, "Quota of "+req.Scope+":", req.Target)
				lim := func(n int64) string {
					if n == 0 {
						return "no limit"
					}
					return fmt.Sprint(n)
				}
				row(w, "Stored VMs:", lim(got.StoredVMs))
				row(w, "Deployed VMs:", lim(got.DeployedVMs))
				row(w, "vCPUs:", lim(got.VCPUs))
				row(w, "Memory MiB:", lim(got.MemoryMiB))
				row(w, "Disk GiB:", lim(got.DiskGiB))
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "set this user's quota instead of a workspace's")
	f.Int64Var(&q.StoredVMs, "stored-vms", 0, "VMs of configurations and library entries")
	f.Int64Var(&q.DeployedVMs, "deployed-vms", 0, "VMs deployed at once")
	f.Int64Var(&q.VCPUs, "vcpus", 0, "vCPUs of the deployed VMs")
	f.Int64Var(&q.MemoryMiB, "memory-mib", 0, "memory of the deployed VMs, MiB")
	f.Int64Var(&q.DiskGiB, "disk-gib", 0, "virtual size of the stored VMs' disks plus archives, GiB")
	return cmd
}

func (a workspaceCmds) printWorkspace(ws *wire.Workspace) error {
	return a.print(ws, func(w io.Writer) {
		row(w, "Workspace:", ws.Org+"/"+ws.Name)
		row(w, "Kind:", ws.Kind)
		row(w, "Created:", when(ws.CreatedAt))
		printQuota(w, ws.Quota, ws.Usage)
		row(w)
		row(w, "MEMBER", "ROLE")
		for _, m := range ws.Members {
			row(w, m.User, m.Role)
		}
	})
}

// groupCmds builds `stagehand group`. Its methods share the app's client, flags and output.
type groupCmds struct{ *app }

func (a groupCmds) command() *cobra.Command {
	list := lister[wire.Group]{
		use: "list [--org ORG]", short: "List groups with their members",
		flag: "org", flagHelp: "only the groups of this organization",
		fetch: func(ctx context.Context, filter string) ([]wire.Group, error) {
			return a.client.Groups().List(ctx, filter)
		},
		header: []any{"GROUP", "MEMBERS", "CREATED"},
		row: func(g wire.Group) []any {
			return []any{g.Org + "/" + g.Name, orDash(strings.Join(g.Members, ",")), when(g.CreatedAt)}
		},
	}.command(a.app)
	return a.group("group", "Create, list and delete groups of users, to share with them at once",
		&cobra.Command{
			Use:   "create GROUP",
			Short: "Create a group (" + workspaceRefHelp + ")",
			Args:  exactArgs("GROUP"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				o, n := client.SplitRef(args[0])
				g, err := a.client.Groups().Create(cmd.Context(), wire.GroupRequest{Org: o, Name: n})
				if err != nil {
					return err
				}
				return a.print(g, func(w io.Writer) {
					row(w, "GROUP", "MEMBERS", "CREATED")
					row(w, g.Org+"/"+g.Name, orDash(strings.Join(g.Members, ",")), when(g.CreatedAt))
				})
			}),
		},
		list,
		argCommand(a.app, "delete GROUP", "Delete a group and the shares made to it", func(ctx context.Context, name string) error {
			return a.client.Groups().Delete(ctx, name)
		}),
		memberCommand(a.app, "add-member GROUP USER", "Add a user to a group", func(ctx context.Context, of, user string) error {
			return a.client.Groups().AddMember(ctx, of, user)
		}, "%s is a member of group %s."),
		memberCommand(a.app, "remove-member GROUP USER", "Remove a user from a group", func(ctx context.Context, of, user string) error {
			return a.client.Groups().RemoveMember(ctx, of, user)
		}, "%s is no longer a member of group %s."),
	)
}
