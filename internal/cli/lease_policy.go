package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// leasePolicy builds `stagehand workspace lease-policy show|set`: a
// workspace's graduated lease policy.
func (a workspaceCmds) leasePolicy() *cobra.Command {
	var req wire.LeasePolicyRequest
	var secretFile string
	set := &cobra.Command{
		Use:   "set WORKSPACE --ladder STEPS [--webhook URL [--webhook-secret-file FILE]]",
		Short: "Set a workspace's graduated lease policy (--ladder none and no --webhook removes it)",
		Long: `Set what happens to a deployment of the workspace once its deployment lease
runs out, as a ladder of steps, each optional, in this order:

  warn=X      X before the expiry: an event, and a POST to the webhook
  suspend     at the expiry: undeploy saving the VMs' state
  undeploy=X  X after the expiry: discard the saved state (undeploy, without suspend)
  archive=X   X after the expiry: archive the configuration (CONFIG-expired-TIME)
  delete=X    X after the expiry: delete the configuration (the archive stays)

for instance --ladder warn=1h,suspend,undeploy=1d,archive=7d,delete=30d. Every
step is posted to the webhook as JSON {event, config, workspace, step, policy,
at, expires, next, next_at}, signed with HMAC-SHA256 in X-Stagehand-Signature
when a secret is given. Extending the lease before suspend starts the ladder
again from the new expiry; after suspend it cancels the later steps. A
workspace without a ladder gets the daemon's (serve --lease-ladder); without a
webhook, the daemon's webhook.`,
		Args: exactArgs("WORKSPACE"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if secretFile != "" {
				b, err := readSecret(secretFile)
				if err != nil {
					return err
				}
				req.WebhookSecret = b
			}
			got, err := a.client.Workspaces().SetLeasePolicy(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return a.printLeasePolicy(got)
		}),
	}
	f := set.Flags()
	f.StringVar(&req.Ladder, "ladder", "", "the steps, e.g. warn=1h,suspend,undeploy=1d,archive=7d,delete=30d, or none")
	f.StringVar(&req.WebhookURL, "webhook", "", "http(s) URL each step is posted to")
	f.StringVar(&secretFile, "webhook-secret-file", "", "file holding the secret that signs the posts (- for stdin)")
	return a.group("lease-policy", "Show or set a workspace's graduated lease policy",
		showCommand(a.app, "show WORKSPACE", "Show a workspace's graduated lease policy", func(ctx context.Context, ws string) (*wire.LeasePolicy, error) {
			return a.client.Workspaces().LeasePolicy(ctx, ws)
		}, a.printLeasePolicy),
		set)
}

// readSecret reads a secret from a file ("-": stdin), without its
// trailing newline.
func readSecret(file string) (string, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("webhook secret: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func (a workspaceCmds) printLeasePolicy(p *wire.LeasePolicy) error {
	return a.print(p, func(w io.Writer) {
		row(w, "Workspace:", p.Workspace)
		if len(p.Steps) == 0 {
			row(w, "Ladder:", "none (the daemon's applies)")
		}
		for _, st := range p.Steps {
			off := time.Duration(st.OffsetSeconds) * time.Second
			switch {
			case off < 0:
				row(w, "  "+st.Step+":", (-off).String()+" before the deployment lease expires")
			case off == 0:
				row(w, "  "+st.Step+":", "when the deployment lease expires")
			default:
				row(w, "  "+st.Step+":", off.String()+" after the deployment lease expires")
			}
		}
		hook := "none (the daemon's, if any)"
		if p.WebhookURL != "" {
			hook = p.WebhookURL
			if p.WebhookSigned {
				hook += " (signed)"
			}
		}
		row(w, "Webhook:", hook)
	})
}

// ladderText says where a configuration is on its lease ladder.
func ladderText(l *wire.LeaseLadder) string {
	s := "policy " + l.Policy
	switch {
	case l.Step != "":
		s += ": " + l.Step + " at " + when(l.StepAt)
	case l.Next == "":
		s += ": not running (not deployed)"
	}
	switch {
	case l.Cancelled:
		s += "; later steps cancelled (lease extended)"
	case l.Next != "":
		s += "; next " + l.Next + " at " + when(l.NextAt)
	}
	return s
}
