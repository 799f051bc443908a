// Package cli is Stagehand's command line: cobra commands that talk to the
// daemon through internal/client and print tables or JSON. `serve`, which
// runs the daemon, is built by main and handed in (Deps.Commands).
//
// Exit codes: 0 success; 1 failure of no particular kind (an internal
// error, a failed job, problems left by doctor); 2 bad command line or a
// request the daemon found invalid; 3 not found; 4 conflict (exists
// already, deployed, busy, over quota); 5 daemon unreachable or
// unavailable; 6 job canceled or waiting interrupted; 7 not authenticated
// (no credentials, or a token that is bad, expired or revoked: log in or
// give another token); 8 forbidden (authenticated, but not allowed: asking
// again will not help). An error is one line on stderr, "stagehand:
// <message>".
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/client"
	"stagehand/internal/errdefs"
)

// Exit codes of Run; see the package comment.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitNotFound    = 3
	ExitConflict    = 4
	ExitUnavailable = 5
	ExitCanceled    = 6
	// ExitUnauthenticated and ExitForbidden tell a script "sign in" from
	// "you may not", which the daemon answers 401 and 403.
	ExitUnauthenticated = 7
	ExitForbidden       = 8
)

// LeaseHelp is the help text of every flag that takes a lease, for serve's
// flags, which main builds.
const LeaseHelp = leaseHelp

// DefaultServer is the daemon address when neither --server nor
// STAGEHAND_SERVER is set and there is no socket in the data dir.
const DefaultServer = "http://127.0.0.1:7480"

// DefaultDataDir is the daemon's data dir when neither serve's --data-dir
// nor STAGEHAND_DATA_DIR is set; the CLI looks for the daemon's socket
// there.
const DefaultDataDir = "/var/lib/stagehand"

// SocketFile is the daemon's socket in its data dir (daemon.SocketFile;
// this package may not import the daemon).
const SocketFile = "stagehand.sock"

// DataDir is the data dir of the daemon on this host: STAGEHAND_DATA_DIR,
// else DefaultDataDir.
func DataDir(getenv func(string) string) string {
	if d := getenv("STAGEHAND_DATA_DIR"); d != "" {
		return d
	}
	return DefaultDataDir
}

// defaultServer is the daemon the CLI talks to without --server:
// STAGEHAND_SERVER, else the socket in the data dir when there is one
// (the socket says who the caller is; TCP does not), else DefaultServer.
func defaultServer(getenv func(string) string) string {
	if s := getenv("STAGEHAND_SERVER"); s != "" {
		return s
	}
	sock := filepath.Join(DataDir(getenv), SocketFile)
	if fi, err := os.Stat(sock); err == nil && fi.Mode().Type() == fs.ModeSocket {
		return "unix://" + sock
	}
	return DefaultServer
}

// Deps are what main hands the CLI: its streams and environment, and the
// commands built outside this package.
type Deps struct {
	// Stdin is what `vm console` sends to the VM; nil reads as empty.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// Commands join the root command: main gives `serve`, which runs the
	// daemon and so must not be built here (cli talks only to the
	// client). Their errors print and map to exit codes like any
	// command's; a bad command line is a UsageError.
	Commands []*cobra.Command
}

// Run runs the command line args (without the program name) and returns
// the process exit code. ctx ends on SIGINT/SIGTERM.
func Run(ctx context.Context, args []string, deps Deps) int {
	if deps.Getenv == nil {
		deps.Getenv = func(string) string { return "" }
	}
	if deps.Stdin == nil {
		deps.Stdin = strings.NewReader("")
	}
	a := &app{deps: deps, stdin: deps.Stdin, stdout: deps.Stdout, stderr: deps.Stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(deps.Stdout)
	root.SetErr(deps.Stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if !a.reached && !isUsage(err) {
		// cobra refused the command line before any command ran.
		err = &usageError{err: err}
	}
	msg := oneLine(err.Error())
	if isUsage(err) && cmd != nil {
		msg += fmt.Sprintf("; see '%s --help'", cmd.CommandPath())
	}
	fmt.Fprintf(deps.Stderr, "stagehand: %s\n", msg)
	return exitCode(err)
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	if isUsage(err) {
		return ExitUsage
	}
	switch errdefs.Kind(err) {
	case errdefs.ErrInvalid:
		return ExitUsage
	case errdefs.ErrNotFound:
		return ExitNotFound
	case errdefs.ErrConflict:
		return ExitConflict
	case errdefs.ErrUnavailable:
		return ExitUnavailable
	case errdefs.ErrCanceled:
		return ExitCanceled
	case errdefs.ErrUnauthenticated:
		return ExitUnauthenticated
	case errdefs.ErrForbidden:
		return ExitForbidden
	}
	if errors.Is(err, context.Canceled) {
		return ExitCanceled
	}
	return ExitFailure
}

// usageError is a command line the CLI refuses before calling the daemon.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// UsageError marks err as a bad command line: exit code 2, and the message
// points to the command's --help. For the commands of Deps.Commands.
func UsageError(err error) error {
	if err == nil {
		return nil
	}
	return &usageError{err: err}
}

func isUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

// oneLine keeps error output to one line whatever the message holds, with
// control characters escaped (see printable).
func oneLine(s string) string {
	return printable(strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")), " "))
}

// app is the state shared by the commands of one Run.
type app struct {
	deps   Deps
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	server    string // --server
	output    string // -o
	tokenFile string // --token-file

	client *client.Client
	// reached is set when a command's own code starts: errors before that
	// come from cobra's parsing and are usage errors.
	reached bool
}

// run wraps a command's work: it marks the command line as accepted.
func (a *app) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.reached = true
		return fn(cmd, args)
	}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "stagehand",
		Short: "Stagehand manages virtual labs: templates, configurations, linked clones",
		Long: `Stagehand manages virtual labs: VM templates, configurations of VMs, linked
and full clones with copy-on-write disk chains, IP pools, and deployments
of configurations as running VMs, fenced or not.

Every command but serve talks to a running daemon: --server, or the
STAGEHAND_SERVER environment variable, else the daemon's socket in its data
dir (STAGEHAND_DATA_DIR, default ` + DefaultDataDir + `) when it is there, else
` + DefaultServer + `. A token for the daemon comes from --token-file or
STAGEHAND_TOKEN, else from stagehand login. An https server whose certificate no CA vouches for is
trusted on first use: its fingerprint is pinned in
~/.config/stagehand/known_servers and any other certificate is refused.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
	}
	root.PersistentFlags().StringVar(&a.server, "server", defaultServer(a.deps.Getenv),
		"daemon URL: unix:///path/to/"+SocketFile+", https://host:port or http://host:port (env STAGEHAND_SERVER)")
	root.PersistentFlags().StringVar(&a.tokenFile, "token-file", "", "file holding the token to send the daemon (env STAGEHAND_TOKEN holds the token itself)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	root.CompletionOptions.DisableDefaultCmd = true
	for _, c := range a.deps.Commands {
		if c.RunE != nil {
			c.RunE = a.run(c.RunE)
		}
		root.AddCommand(c)
	}
	root.AddCommand(
		templateCmds{a}.command(),
		networkCmds{a}.command(),
		configCmds{a}.command(),
		diskCmds{a}.command(),
		vmCmds{a}.command(),
		jobCmds{a}.command(),
		serverCmds{a}.doctor(),
		serverCmds{a}.status(),
		libraryCmds{a}.command(),
		archiveCmds{a}.command(),
		serverCmds{a}.cleanup(),
		eventCmds{a}.command(),
		hostCmds{a}.command(),
		snapshotCmds{a}.command(),
		userCmds{a}.command(), orgCmds{a}.command(), workspaceCmds{a}.command(), groupCmds{a}.command(), tokenCmds{a}.command(), sessionCmds{a}.auth(),
		sessionCmds{a}.login(), sessionCmds{a}.logout(),
		completer{a}.command(),
	)
	completer{a}.register(root)
	return root
}

// setup checks the global flags and builds the client.
func (a *app) setup(cmd *cobra.Command, args []string) error {
	switch a.output {
	case "table", "json":
	default:
		return usagef("output format %q is not table or json", a.output)
	}
	if a.server == "" {
		return usagef("--server is empty")
	}
	opts, err := a.clientOptions()
	if err != nil {
		return err
	}
	a.client = client.New(a.server, opts...)
	return nil
}

// clientOptions are the token (--token-file, else STAGEHAND_TOKEN, else
// the session of stagehand login) and the
// known servers file of the client. The token itself is never printed.
func (a *app) clientOptions() ([]client.Option, error) {
	var opts []client.Option
	token := a.deps.Getenv("STAGEHAND_TOKEN")
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return nil, usagef("--token-file: %v", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, usagef("--token-file %s is empty", a.tokenFile)
		}
	}
	if token == "" {
		// The session of `stagehand login`, when there is one.
		if file, err := client.TokenFile(a.deps.Getenv); err == nil {
			if t, err := readTokenFile(file); err == nil {
				token = t
			}
		}
	}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	if file, err := client.KnownServersFile(a.deps.Getenv); err == nil {
		opts = append(opts, client.WithKnownServers(file, func(server, fingerprint string) {
			fmt.Fprintf(a.stderr, "stagehand: trusting %s with fingerprint %s (pinned in %s)\n", server, fingerprint, file)
		}))
	}
	return opts, nil
}

// group returns a command that only holds subcommands: without one it
// prints its help, with an unknown one it fails.
func (a *app) group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	c.AddCommand(subs...)
	return c
}

// ExactArgs is exactArgs, for the commands of Deps.Commands.
func ExactArgs(names ...string) cobra.PositionalArgs { return exactArgs(names...) }

// exactArgs is cobra.ExactArgs with names in the message.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s wants %d argument(s): %s; got %d", cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))
		}
		return nil
	}
}

// rangeArgs accepts the required names followed by up to len(optional)
// more.
func rangeArgs(required []string, optional ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < len(required) || len(args) > len(required)+len(optional) {
			want := strings.Join(required, " ")
			for _, o := range optional {
				want += " [" + o + "]"
			}
			return usagef("%s wants arguments %s; got %d", cmd.CommandPath(), want, len(args))
		}
		return nil
	}
}
