package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// hostCmds builds `stagehand host`. Its methods share the app's client, flags and output.
type hostCmds struct{ *app }

// command is `stagehand host`: the daemons of an installation whose
// hosts share one PostgreSQL store.
func (a hostCmds) command() *cobra.Command {
	return a.group("host", "List the hosts of the installation; drain, undrain and remove one (system administrator)",
		lister[wire.Host]{
			use: "list", short: "List the hosts: state, online, capacity, deployed configurations",
			fetch: func(ctx context.Context, _ string) ([]wire.Host, error) {
				return a.client.Hosts().List(ctx)
			},
			header: []any{"NAME", "STATE", "ONLINE", "MEMORY", "CPUS", "DEPLOYED", "LAST SEEN", "ADVERTISE"},
			row: func(h wire.Host) []any {
				return []any{h.Name, h.State, yesNo(h.Online), fmt.Sprintf("%d MiB", h.MemoryMiB), h.CPUs, len(h.Deployed), when(h.LastSeen), h.AdvertiseURL}
			},
		}.command(a.app),
		showCommand(a.app, "show NAME", "Show a host and the configurations deployed on it", func(ctx context.Context, name string) (*wire.Host, error) {
			return a.client.Hosts().Get(ctx, name)
		}, a.printHost),
		a.drainCommand(),
		showCommand(a.app, "undrain NAME", "Make a draining host take new deployments again", func(ctx context.Context, name string) (*wire.Host, error) {
			return a.client.Hosts().Undrain(ctx, name)
		}, a.printHost),
		argCommand(a.app, "remove NAME", "Remove a host from the installation (refused while configurations are deployed there)", func(ctx context.Context, name string) error {
			return a.client.Hosts().Remove(ctx, name)
		}),
	)
}

func (a hostCmds) printHost(h *wire.Host) error {
	return a.print(h, func(w io.Writer) {
		row(w, "Name:", h.Name)
		row(w, "State:", h.State)
		row(w, "Online:", yesNo(h.Online))
		row(w, "Advertise:", h.AdvertiseURL)
		row(w, "Memory:", fmt.Sprintf("%d MiB", h.MemoryMiB))
		row(w, "CPUs:", h.CPUs)
		row(w, "Started:", when(h.StartedAt))
		row(w, "Last seen:", when(h.LastSeen))
		row(w, "Deployed:", orDash(strings.Join(h.Deployed, ", ")))
		row(w, "Home of:", orDash(strings.Join(h.Homed, ", ")))
		if d := h.Drain; d != nil {
			text := fmt.Sprintf("%s (asked %s", d.State, when(d.CreatedAt))
			if d.All {
				text += ", --all"
			}
			if d.Attempts > 1 {
				text += fmt.Sprintf(", resumed %d times", d.Attempts-1)
			}
			row(w, "Drain:", text+")")
			if d.Error != "" {
				row(w, "Drain error:", d.Error)
			}
		}
	})
}
