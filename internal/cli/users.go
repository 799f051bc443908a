package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"stagehand/internal/api/wire"
)

// userCmds builds `stagehand user`. Its methods share the app's client, flags and output.
type userCmds struct{ *app }

func (a userCmds) command() *cobra.Command {
	return a.group("user", "Create, list, show and delete users and set their passwords",
		a.create(),
		lister[wire.User]{
			use: "list", short: "List users",
			fetch: func(ctx context.Context, _ string) ([]wire.User, error) {
				return a.client.Users().List(ctx)
			},
			header: []any{"NAME", "EMAIL", "DISPLAY NAME", "SYSTEM ADMIN", "DISABLED", "PASSWORD", "DEFAULT WORKSPACE"},
			row: func(u wire.User) []any {
				return []any{u.Name, orDash(u.Email), orDash(u.DisplayName), yesNo(u.SystemAdmin), yesNo(u.Disabled), yesNo(u.HasPassword), orDash(u.DefaultWorkspace)}
			},
		}.command(a.app),
		showCommand(a.app, "show NAME", "Show a user: memberships, groups, organizations administered, quota", func(ctx context.Context, name string) (*wire.User, error) {
			return a.client.Users().Get(ctx, name)
		}, a.printUser),
		argCommand(a.app, "delete NAME", "Delete a user who owns no object (their tokens, memberships and shares go too)", func(ctx context.Context, name string) error {
			return a.client.Users().Delete(ctx, name)
		}),
		a.set(),
		a.setPassword(),
	)
}

func (a userCmds) set() *cobra.Command {
	var (
		email, display, workspace string
		disabled, systemAdmin     bool
	)
	cmd := &cobra.Command{
		Use:   "set NAME [--email ADDR] [--display-name TEXT] [--default-workspace WS] [--disabled=true|false] [--system-admin=true|false]",
		Short: "Change a user: only the flags given change",
		Long: `Change a user; only the flags given change. You change your own e-mail,
display name and default workspace (one you are a member of; "" for
none); --disabled and --system-admin are the system administrator's, who
changes anyone's. A disabled user's tokens and sessions stop working at
their next request.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			var req wire.UserUpdate
			f := cmd.Flags()
			if f.Changed("email") {
				req.Email = &email
			}
			if f.Changed("display-name") {
				req.DisplayName = &display
			}
			if f.Changed("default-workspace") {
				req.DefaultWorkspace = &workspace
			}
			if f.Changed("disabled") {
				req.Disabled = &disabled
			}
			if f.Changed("system-admin") {
				req.SystemAdmin = &systemAdmin
			}
			if req == (wire.UserUpdate{}) {
				return usagef("nothing to change: give --email, --display-name, --default-workspace, --disabled or --system-admin")
			}
			u, err := a.client.Users().Update(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return a.printUser(u)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&email, "email", "", "e-mail address (unique; \"\" for none)")
	f.StringVar(&display, "display-name", "", "name shown for people")
	f.StringVar(&workspace, "default-workspace", "", "workspace (org/ws, or ws of organization default) of the user's new objects; \"\" for none")
	f.BoolVar(&disabled, "disabled", false, "disable (true) or enable (false) the user")
	f.BoolVar(&systemAdmin, "system-admin", false, "make (true) or unmake (false) a system administrator")
	return cmd
}

func (a userCmds) create() *cobra.Command {
	var req wire.UserRequest
	var fromStdin, none bool
	cmd := &cobra.Command{
		Use:   "create NAME [--email ADDR] [--display-name TEXT] [--system-admin] [--default-workspace WS] [--password-stdin | --no-password]",
		Short: "Create a user; the password is asked for (no echo) or read from stdin",
		Long: `Create a user. The password is asked for on the terminal without echo, or
read as the first line of stdin with --password-stdin; it is never taken
from the command line, where other users of the machine could see it.
--no-password makes a user who signs in with tokens or OIDC only.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			if fromStdin && none {
				return usagef("--password-stdin and --no-password exclude each other")
			}
			if !none {
				pw, err := a.newPassword(passwordInput{fromStdin: fromStdin, lines: bufio.NewReader(a.stdin)},
					fmt.Sprintf("Password for %s: ", req.Name), "--no-password for a user without one")
				if err != nil {
					return err
				}
				req.Password = pw
			}
			u, err := a.client.Users().Create(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printUser(u)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Email, "email", "", "e-mail address (unique; OIDC logins are matched by it)")
	f.StringVar(&req.DisplayName, "display-name", "", "name shown for people")
	f.BoolVar(&req.SystemAdmin, "system-admin", false, "may do everything everywhere")
	f.BoolVar(&req.Disabled, "disabled", false, "create the user disabled (cannot sign in)")
	f.StringVar(&req.DefaultWorkspace, "default-workspace", "", "workspace (org/ws, or ws of organization default) of the user's new objects")
	f.BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of stdin")
	f.BoolVar(&none, "no-password", false, "no password: the user signs in with tokens or OIDC only")
	return cmd
}

func (a userCmds) setPassword() *cobra.Command {
	var fromStdin, current bool
	cmd := &cobra.Command{
		Use:   "set-password NAME [--current] [--password-stdin]",
		Short: "Set a user's password (your own needs --current: the one you have now)",
		Long: `Set a user's password. Changing your own password needs the one you have
now (--current); a system administrator sets anyone's without it. The
passwords are asked for on the terminal without echo, or read from stdin
with --password-stdin: with --current the current one on the first line
and the new one on the second.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			in := passwordInput{fromStdin: fromStdin, lines: bufio.NewReader(a.stdin)}
			var req wire.PasswordRequest
			if current {
				old, err := a.readPassword(in, fmt.Sprintf("Current password of %s: ", args[0]))
				if err != nil {
					return err
				}
				req.OldPassword = old
			}
			pw, err := a.newPassword(in, fmt.Sprintf("New password for %s: ", args[0]), "")
			if err != nil {
				return err
			}
			req.Password = pw
			if err := a.client.Users().SetPassword(cmd.Context(), args[0], req); err != nil {
				return err
			}
			return a.done(fmt.Sprintf("Password of %s set.", args[0]))
		}),
	}
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password(s) from stdin, one a line")
	cmd.Flags().BoolVar(&current, "current", false, "give the current password (needed to change your own)")
	return cmd
}

// passwordInput is where a command's passwords come from: lines of stdin
// (--password-stdin), else the terminal.
type passwordInput struct {
	fromStdin bool
	lines     *bufio.Reader // stdin, shared by the passwords of one command
}

// newPassword reads a new password: from stdin once, or from the terminal
// twice, the second time to catch a typing mistake nobody could see.
// other names the alternative to mention when there is no terminal.
func (a userCmds) newPassword(in passwordInput, prompt, other string) (string, error) {
	pw, err := a.readPassword(in, prompt)
	if err != nil {
		if other != "" && errors.Is(err, errNoTerminal) {
			return "", usagef("%v, or %s", err, other)
		}
		return "", err
	}
	if in.fromStdin {
		return pw, nil
	}
	again, err := a.readPassword(in, "Again: ")
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", usagef("the two passwords differ")
	}
	return pw, nil
}

var errNoTerminal = errors.New("stdin is not a terminal to ask the password on: give --password-stdin")

// readPassword reads one password: the next line of stdin, or typed on the
// terminal without echo after prompt (on stderr, so stdout stays the
// command's output).
func (a *app) readPassword(in passwordInput, prompt string) (string, error) {
	if in.fromStdin {
		line, err := in.lines.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			if err == io.EOF {
				return "", usagef("--password-stdin: stdin ended before a password")
			}
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", &usageError{err: errNoTerminal}
	}
	fmt.Fprint(a.stderr, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", fmt.Errorf("read password from the terminal: %w", err)
	}
	return string(b), nil
}

func (a userCmds) printUser(u *wire.User) error {
	return a.print(u, func(w io.Writer) {
		row(w, "Name:", u.Name)
		row(w, "Email:", orDash(u.Email))
		row(w, "Display name:", orDash(u.DisplayName))
		row(w, "System admin:", yesNo(u.SystemAdmin))
		row(w, "Disabled:", yesNo(u.Disabled))
		row(w, "Password:", yesNo(u.HasPassword))
		row(w, "Default workspace:", orDash(u.DefaultWorkspace))
		row(w, "Admin of:", orDash(strings.Join(u.AdminOf, ", ")))
		row(w, "Groups:", orDash(strings.Join(u.Groups, ", ")))
		row(w, "Created:", when(u.CreatedAt))
		printQuota(w, u.Quota, u.Usage)
		if len(u.Memberships) > 0 {
			row(w)
			row(w, "WORKSPACE", "ROLE")
			for _, m := range u.Memberships {
				row(w, m.Workspace, m.Role)
			}
		}
	})
}

// printQuota writes the usage of a user or workspace against its limits
// ("3 of 10", "3" when unlimited).
func printQuota(w io.Writer, q *wire.QuotaLimits, use *wire.QuotaUsage) {
	if use == nil {
		return
	}
	var lim wire.QuotaLimits
	if q != nil {
		lim = *q
	}
	of := func(n, limit int64) string {
		if limit == 0 {
			return fmt.Sprintf("%d (no limit)", n)
		}
		return fmt.Sprintf("%d of %d", n, limit)
	}
	row(w, "Stored VMs:", of(use.StoredVMs, lim.StoredVMs))
	row(w, "Deployed VMs:", of(use.DeployedVMs, lim.DeployedVMs))
	row(w, "vCPUs:", of(use.VCPUs, lim.VCPUs))
	row(w, "Memory MiB:", of(use.MemoryMiB, lim.MemoryMiB))
	row(w, "Disk GiB:", of(use.DiskGiB, lim.DiskGiB))
}
