package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
)

// tokenNotShownAgain is printed under a new token: the daemon keeps only
// its hash, so this is the one chance to copy it.
const tokenNotShownAgain = "This token is not shown again: store it now (the daemon keeps only its hash)."

// tokenCmds builds `stagehand token`. Its methods share the app's client, flags and output.
type tokenCmds struct{ *app }

func (a tokenCmds) command() *cobra.Command {
	list := lister[wire.Token]{
		use: "list [--user USER]", short: "List API tokens (never their secrets), revoked and expired ones included",
		flag: "user", flagHelp: "another user's tokens (system administrators)",
		fetch: func(ctx context.Context, filter string) ([]wire.Token, error) {
			return a.client.Tokens().List(ctx, filter)
		},
		header: []any{"ID", "NAME", "USER", "STATE", "WORKSPACE", "MAX ROLE", "EXPIRES", "LAST USED"},
		row: func(t wire.Token) []any {
			return []any{t.ID, t.Name, t.User, t.State, orDash(t.Workspace), orDash(t.MaxRole), when(t.ExpiresAt), when(t.LastUsedAt)}
		},
	}.command(a.app)
	return a.group("token", "Create, list and revoke API tokens",
		a.create(),
		list,
		&cobra.Command{
			Use:   "revoke ID",
			Short: "Revoke a token: it stops working at once and stays listed as revoked",
			Args:  exactArgs("ID"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				if err := a.client.Tokens().Revoke(cmd.Context(), args[0]); err != nil {
					return err
				}
				return a.done(fmt.Sprintf("Token %s revoked.", args[0]))
			}),
		},
	)
}

func (a tokenCmds) create() *cobra.Command {
	var req wire.TokenRequest
	cmd := &cobra.Command{
		Use:   "create NAME [--expires-in 30d] [--workspace WS --max-role ROLE] [--user USER]",
		Short: "Create an API token; it is printed once",
		Long: `Create an API token for scripts and the CLI (STAGEHAND_TOKEN or
--token-file). The token is printed once: the daemon keeps only its hash.
It expires (default 90 days), and may be restricted to one workspace and
at most one role's rights there (--workspace with --max-role).`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			if (req.Workspace == "") != (req.MaxRole == "") {
				return usagef("--workspace and --max-role go together: a token restricted to a workspace acts there with at most that role")
			}
			nt, err := a.client.Tokens().Create(cmd.Context(), req)
			if err != nil {
				return err
			}
			t := nt.Record
			return a.print(nt, func(w io.Writer) {
				row(w, "Token:", nt.Token)
				row(w, "ID:", t.ID)
				row(w, "Name:", t.Name)
				row(w, "User:", t.User)
				row(w, "Workspace:", orDash(t.Workspace))
				row(w, "Max role:", orDash(t.MaxRole))
				row(w, "Expires:", when(t.ExpiresAt))
				row(w)
				row(w, tokenNotShownAgain)
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.ExpiresIn, "expires-in", "", "lifetime: 90d (default), 12h, 720h, ...")
	f.StringVar(&req.Workspace, "workspace", "", "restrict the token to this workspace (ORG/NAME or NAME)")
	f.StringVar(&req.MaxRole, "max-role", "", "with --workspace: at most this role's rights there (admin, template-creator, author, user, console-only or viewer)")
	f.StringVar(&req.User, "user", "", "make the token for another user (system administrators)")
	return cmd
}
