package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// drainPoll is how often `host drain --wait` reads the host again.
const drainPoll = 500 * time.Millisecond

// drainCommand is `stagehand host drain NAME [--all] [--wait]`.
func (a hostCmds) drainCommand() *cobra.Command {
	var all, wait bool
	cmd := &cobra.Command{
		Use:   "drain NAME [--all] [--wait]",
		Short: "Mark a host draining and move what runs there to other hosts, one configuration at a time (save, move, resume)",
		Args:  exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			h, err := a.client.Hosts().Drain(cmd.Context(), args[0], all)
			if err != nil {
				return err
			}
			if wait {
				if h, err = a.waitDrain(cmd.Context(), h); err != nil {
					return err
				}
			}
			return a.printHost(h)
		}),
	}
	cmd.Flags().BoolVar(&all, "all", false, "also move the undeployed configurations' tops (before `host remove`)")
	cmd.Flags().BoolVar(&wait, "wait", false, "print the progress and return when the drain ends")
	return cmd
}

// waitDrain reads host h until its drain ends, printing each change of
// what is left on stderr; a failed drain is an error saying why.
func (a hostCmds) waitDrain(ctx context.Context, h *wire.Host) (*wire.Host, error) {
	last := ""
	for {
		if h.Drain == nil {
			return nil, fmt.Errorf("host %s: no drain is recorded", h.Name)
		}
		left := drainLeft(h)
		if now := fmt.Sprintf("%s: %s", h.Drain.State, strings.Join(left, ", ")); now != last {
			last = now
			fmt.Fprintf(a.stderr, "host %s: drain %s, %d left %s\n", h.Name, stateWord(h), len(left), orDash(strings.Join(left, ", ")))
		}
		switch h.Drain.State {
		case wire.DrainDone:
			return h, nil
		case wire.DrainFailed:
			return nil, errors.New("drain of host " + h.Name + " stopped: " + h.Drain.Error)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(drainPoll):
		}
		var err error
		if h, err = a.client.Hosts().Get(ctx, h.Name); err != nil {
			return nil, err
		}
	}
}

// drainLeft is what the drain still has to move.
func drainLeft(h *wire.Host) []string {
	if h.Drain != nil && h.Drain.All {
		return h.Homed
	}
	return h.Deployed
}

func stateWord(h *wire.Host) string {
	if h.Drain.State == wire.DrainRunning {
		return "running"
	}
	return h.Drain.State
}
