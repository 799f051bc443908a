package cli

import (
	"errors"
	"io"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

func (a vmCmds) command() *cobra.Command {
	return a.group("vm", "Stop, start and reset deployed VMs; attach to their console; read their serial log",
		a.action(wire.VMStop, "Ask a VM to power off (ACPI shutdown)"),
		a.action(wire.VMStart, "Start a stopped VM"),
		a.action(wire.VMReset, "Reset a running VM, as the reset button does"),
		a.console(),
		a.screenshot(),
		a.consoleLink(),
		a.log(),
		a.setHostname(),
	)
}

// action is `vm stop|start|reset CONFIG VM`: it shows the
// configuration afterwards.
func (a vmCmds) action(action, short string) *cobra.Command {
	return &cobra.Command{
		Use:   action + " CONFIG VM",
		Short: short,
		Args:  exactArgs("CONFIG", "VM"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client.VMs().Action(cmd.Context(), args[0], args[1], action)
			if err != nil {
				return err
			}
			return a.printConfig(c)
		}),
	}
}

func (a vmCmds) log() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "log CONFIG VM [-f]",
		Short: "Print a VM's serial console log (-f: keep printing until interrupted)",
		Args:  exactArgs("CONFIG", "VM"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var (
				r   io.ReadCloser
				err error
			)
			if follow {
				r, err = a.client.VMs().FollowLog(ctx, args[0], args[1])
			} else {
				r, err = a.client.VMs().Log(ctx, args[0], args[1])
			}
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(a.stdout, r)
			if follow && ctx.Err() != nil {
				return nil // interrupting is how -f ends
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what the VM writes")
	return cmd
}
