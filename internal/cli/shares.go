package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

func (a configCmds) share() *cobra.Command {
	var req wire.ShareRequest
	cmd := &cobra.Command{
		Use:   "share NAME --with USER|group:GROUP --level read|change|full|console",
		Short: "Share a configuration with a user or a group, or change their level",
		Long: `Share a configuration with a user or a group (group:GROUP, or
group:ORG/GROUP for a group of another organization), or change the level
of their share. Levels: full (what the owner may do, deleting and sharing
included), change (deploy, power, console, edit, copy), read, console
(read and the consoles). A share never gives more than the grantee's role
allows; outside the configuration's workspace it gives at most read.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if req.With == "" || req.Level == "" {
				return usagef("--with USER|group:GROUP and --level read|change|full|console are required")
			}
			s, err := a.client.Configs().Share(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return a.print(s, func(w io.Writer) {
				row(w, "WITH", "LEVEL", "SINCE")
				row(w, s.With, s.Level, when(s.CreatedAt))
			})
		}),
	}
	cmd.Flags().StringVar(&req.With, "with", "", "user name, or group:GROUP")
	cmd.Flags().StringVar(&req.Level, "level", "", "full, change, read or console")
	return cmd
}

func (a configCmds) unshare() *cobra.Command {
	var with string
	cmd := &cobra.Command{
		Use:   "unshare NAME --with USER|group:GROUP",
		Short: "Remove a user's or a group's share of a configuration",
		Args:  exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if with == "" {
				return usagef("--with USER|group:GROUP is required")
			}
			if err := a.client.Configs().Unshare(cmd.Context(), args[0], with); err != nil {
				return err
			}
			return a.done(fmt.Sprintf("Configuration %s is no longer shared with %s.", args[0], with))
		}),
	}
	cmd.Flags().StringVar(&with, "with", "", "user name, or group:GROUP")
	return cmd
}

func (a configCmds) shares() *cobra.Command {
	return &cobra.Command{
		Use:   "shares NAME",
		Short: "List who a configuration is shared with",
		Args:  exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ss, err := a.client.Configs().Shares(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.print(ss, func(w io.Writer) {
				row(w, "WITH", "LEVEL", "SINCE")
				for _, s := range ss {
					row(w, s.With, s.Level, when(s.CreatedAt))
				}
			})
		}),
	}
}

func (a sessionCmds) auth() *cobra.Command {
	var req wire.ExplainRequest
	explain := &cobra.Command{
		Use:   "explain --user USER --action ACTION --object KIND/NAME",
		Short: "Say whether a user may do an action to an object, and which row decided",
		Long: `Say whether a user may do an action to an object and why: the membership,
role, share or administration that decided. KIND/NAME is config/web,
template/base, network/lan, library/gold, archive/old; workspace/ORG/NAME
for an action in a workspace itself (create, list); system for a
system-wide one. Actions are kind.verb: config.deploy, template.create,
workspace.admin, ...`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if req.User == "" || req.Action == "" || req.Object == "" {
				return usagef("--user, --action and --object are required")
			}
			if req.Object != "system" && !strings.Contains(req.Object, "/") {
				return usagef("--object %q is not KIND/NAME (e.g. config/web), workspace/ORG/NAME or system", req.Object)
			}
			e, err := a.client.Auth().Explain(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(e, func(w io.Writer) {
				verdict, seen := "refused", "no (a refusal answers 404 not found)"
				if e.Allowed {
					verdict = "allowed"
				}
				if e.Visible {
					seen = "yes"
					if !e.Allowed {
						seen += " (a refusal answers 403 forbidden)"
					}
				}
				row(w, "Decision:", verdict)
				row(w, "Visible:", seen)
				row(w, "Reason:", e.Reason)
			})
		}),
	}
	f := explain.Flags()
	f.StringVar(&req.User, "user", "", "the user asking")
	f.StringVar(&req.Action, "action", "", "the action, kind.verb (config.deploy, ...)")
	f.StringVar(&req.Object, "object", "", "KIND/NAME, workspace/ORG/NAME or system")
	return a.group("auth", "Explain authorization decisions", explain)
}
