package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

func (a serverCmds) doctor() *cobra.Command {
	var repair bool
	cmd := &cobra.Command{
		Use:   "doctor [--repair]",
		Short: "Check the store against the layer files and show the VM accelerator; exit non-zero when problems remain",
		Args:  exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			rep, err := a.client.Server().Doctor(cmd.Context(), repair)
			if err != nil {
				return err
			}
			remaining := 0
			for _, p := range rep.Problems {
				if !p.Repaired {
					remaining++
				}
			}
			if err := a.print(rep, func(w io.Writer) { printDoctor(w, rep, remaining) }); err != nil {
				return err
			}
			if remaining > 0 {
				hint := ""
				if !repair {
					hint = " (stagehand doctor --repair fixes the repairable ones)"
				}
				return fmt.Errorf("%d problem(s) remain%s", remaining, hint)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "fix the problems that are safe to fix")
	return cmd
}

func printDoctor(w io.Writer, rep *wire.DoctorReport, remaining int) {
	if rep.Accel != "" {
		accel := "accelerator: " + rep.Accel
		if rep.AccelReason != "" {
			accel += " (" + oneLine(rep.AccelReason) + ")"
		}
		row(w, accel)
		row(w)
	}
	if len(rep.Problems) > 0 {
		row(w, "KIND", "SUBJECT", "STATUS", "DETAIL")
		for _, p := range rep.Problems {
			status := "manual"
			switch {
			case p.Repaired:
				status = "repaired"
			case p.Repairable:
				status = "repairable"
			}
			row(w, p.Kind, p.Subject, status, orDash(oneLine(p.Detail)))
		}
		row(w)
	}
	row(w, fmt.Sprintf("Checked %d layers (%d read by qemu-img check, the others unchanged since they passed or in use): %d problem(s), %d remaining.",
		rep.Checked, rep.ImageChecks, len(rep.Problems), remaining))
}
