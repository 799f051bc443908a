package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/client"
	"stagehand/internal/errdefs"
)

// sessionCmds builds `stagehand login`, `logout` and `auth`: who the CLI is and what it may do. Its methods share the app's client, flags and output.
type sessionCmds struct{ *app }

// login is `stagehand login`: a password login whose session token
// is kept in client.TokenFile and sent by later commands that are given
// no other token.
func (a sessionCmds) login() *cobra.Command {
	var user string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "login [--user NAME] [--password-stdin]",
		Short: "Log in with a password; later commands use the session (12 h)",
		Long: `Log in to the daemon with a user's password. The session's token is kept in
$XDG_CONFIG_HOME/stagehand/token (else ~/.config/stagehand/token, 0600)
and sent by later commands that get no --token-file or STAGEHAND_TOKEN,
until it expires (12 h) or stagehand logout. The password is asked on the
terminal without echo, or read from the first line of stdin with
--password-stdin. Failed logins are throttled per user and address.`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if user == "" {
				user = a.deps.Getenv("USER")
			}
			if user == "" {
				return usagef("no user to log in as: give --user NAME")
			}
			file, err := client.TokenFile(a.deps.Getenv)
			if err != nil {
				return usagef("%v", err)
			}
			pw, err := a.readPassword(passwordInput{fromStdin: fromStdin, lines: bufio.NewReader(a.stdin)},
				fmt.Sprintf("Password of %s: ", user))
			if err != nil {
				return err
			}
			tok, err := a.client.Auth().Login(cmd.Context(), user, pw)
			if err != nil {
				return err
			}
			if err := writeTokenFile(file, tok); err != nil {
				return err
			}
			return a.done(fmt.Sprintf("Logged in as %s; the session is kept in %s.", user, file))
		}),
	}
	cmd.Flags().StringVar(&user, "user", "", "user to log in as (default $USER)")
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of stdin")
	return cmd
}

// logout is `stagehand logout`: the daemon revokes the kept
// session and the file goes.
func (a sessionCmds) logout() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "End the session of stagehand login and forget its token",
		Args:  exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			file, err := client.TokenFile(a.deps.Getenv)
			if err != nil {
				return usagef("%v", err)
			}
			tok, err := readTokenFile(file)
			if errors.Is(err, fs.ErrNotExist) {
				return a.done("Not logged in.")
			}
			if err != nil {
				return err
			}
			opts, _ := a.clientOptions()
			c := client.New(a.server, append(opts, client.WithToken(tok))...)
			lerr := c.Auth().Logout(cmd.Context())
			if lerr != nil && !errors.Is(lerr, errdefs.ErrUnauthenticated) {
				return lerr // the daemon could not end it: keep the token to try again
			}
			if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", file, err)
			}
			if lerr != nil {
				return a.done("The session had already ended; its token is forgotten.")
			}
			return a.done("Logged out.")
		}),
	}
}

// writeTokenFile keeps tok in file, 0600 in a 0700 directory, replacing
// what was there at once (a reader never sees half a token).
func writeTokenFile(file, tok string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("keep the session: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(file), ".token-*")
	if err != nil {
		return fmt.Errorf("keep the session: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("keep the session in %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keep the session in %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), file); err != nil {
		return fmt.Errorf("keep the session: %w", err)
	}
	return nil
}

// readTokenFile reads the token a login kept; an empty file is an error
// naming it.
func readTokenFile(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", usagef("%s is empty: run stagehand login again", file)
	}
	return tok, nil
}
