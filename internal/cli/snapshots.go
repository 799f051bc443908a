package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// snapshotCmds builds `stagehand snapshot`. Its methods share the app's
// client, flags and output.
type snapshotCmds struct{ *app }

// command is `stagehand snapshot`: the snapshot tree of a configuration.
func (a snapshotCmds) command() *cobra.Command {
	return a.group("snapshot", "Take, list, revert to and delete snapshots of a configuration",
		a.create(), a.list(), a.revert(), a.delete())
}

func (a snapshotCmds) create() *cobra.Command {
	var withState bool
	cmd := &cobra.Command{
		Use:   "create CONFIG NAME [--with-state]",
		Short: "Freeze every VM disk's top as snapshot NAME; the VMs go on on fresh deltas",
		Long: `Take a snapshot of a configuration, deployed or not. Every VM disk's current
top is frozen and the disk goes on writing a fresh delta on it. A deployed
configuration's guests are paused together only for the switch; the pause of
each guest is shown.

  --with-state  also save each deployed guest's memory and device state: a
                revert then resumes the guests where they were instead of
                booting them (the guests stay paused while it is written).`,
		Args: exactArgs("CONFIG", "NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			s, err := a.client.Snapshots().Create(cmd.Context(), args[0], wire.SnapshotRequest{Name: args[1], WithState: withState})
			if err != nil {
				return err
			}
			return a.print(s, func(w io.Writer) {
				row(w, "Snapshot:", s.Name)
				row(w, "Parent:", orDash(s.Parent))
				row(w, "With state:", yesNo(s.WithState))
				row(w, "Layers:", len(s.Layers))
				for _, p := range s.Pauses {
					row(w, "Paused "+p.VM+":", fmt.Sprintf("%.1f ms", p.PauseMS))
				}
			})
		}),
	}
	cmd.Flags().BoolVar(&withState, "with-state", false, "also save each deployed guest's memory and device state")
	return cmd
}

func (a snapshotCmds) list() *cobra.Command {
	return &cobra.Command{
		Use:   "list CONFIG",
		Short: "Draw a configuration's snapshot tree: parent, time, state, bytes each holds alone",
		Args:  exactArgs("CONFIG"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ss, err := a.client.Snapshots().List(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if ss == nil {
				ss = []wire.Snapshot{}
			}
			return a.print(ss, func(w io.Writer) {
				row(w, "SNAPSHOT", "CREATED", "STATE", "EXCLUSIVE", "")
				for _, s := range ss {
					name := strings.Repeat("  ", s.Depth) + s.Name
					if s.Depth > 0 {
						name = strings.Repeat("  ", s.Depth-1) + "└─" + s.Name
					}
					mark := ""
					if s.Current {
						mark = "← current"
					}
					row(w, name, when(s.CreatedAt), yesNo(s.WithState), size(s.ExclusiveBytes), mark)
				}
			})
		}),
	}
}

func (a snapshotCmds) revert() *cobra.Command {
	return &cobra.Command{
		Use:   "revert CONFIG NAME",
		Short: "Discard the current state and continue from snapshot NAME (a deployed configuration is deployed again)",
		Args:  exactArgs("CONFIG", "NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client.Snapshots().Revert(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
}

func (a snapshotCmds) delete() *cobra.Command {
	return &cobra.Command{
		Use:   "delete CONFIG NAME",
		Short: "Delete snapshot NAME; frees only what nothing else (child snapshots, clones, current disks) uses",
		Args:  exactArgs("CONFIG", "NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			return a.client.Snapshots().Delete(cmd.Context(), args[0], args[1])
		}),
	}
}
