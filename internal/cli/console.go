package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"stagehand/internal/api/wire"
	"stagehand/internal/client"
)

// detachKey (Ctrl-]) ends an interactive console session, as in telnet.
const detachKey = 0x1d

// When stdin is not a terminal, the session ends once stdin has ended and
// the console has then been quiet for consoleQuiet, or after
// consoleLingerMax at most, so that a script reads the answer to what it
// sent.
const (
	consoleQuiet     = time.Second
	consoleLingerMax = 10 * time.Second
)

// vmCmds builds `stagehand vm`: power, logs and consoles of a configuration's VMs. Its methods share the app's client, flags and output.
type vmCmds struct{ *app }

func (a vmCmds) console() *cobra.Command {
	var replay bool
	cmd := &cobra.Command{
		Use:   "console CONFIG VM [--replay]",
		Short: "Attach to a running VM's serial console (Ctrl-] detaches)",
		Long: `Attach to the serial console of a running VM.

Any number of sessions (and web console viewers) share a console; this one
takes the keyboard when it attaches, and the others watch until they take
it back. --replay starts with the console's last output (up to 64 KiB), so
the screen shows as it is.

In a terminal, the terminal goes into raw mode so that every key, Ctrl-C
included, reaches the VM; Ctrl-] detaches and restores the terminal.

When stdin is not a terminal, stdin goes to the console and the console's
output to stdout; once stdin ends, the command waits until the console has
been quiet for a second (10 seconds at most) and exits, so scripts can run

  printf 'uname -a\n' | stagehand vm console web vm1`,
		Args: exactArgs("CONFIG", "VM"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var opts []client.ConsoleOption
			if replay {
				opts = append(opts, client.ConsoleReplay())
			}
			conn, err := a.client.VMs().Console(ctx, args[0], args[1], opts...)
			if err != nil {
				return err
			}
			defer conn.Close()
			if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				return a.interactiveConsole(ctx, conn, f, args[0]+"/"+args[1])
			}
			a.pipedConsole(ctx, conn)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&replay, "replay", false, "start with the console's last output")
	return cmd
}

// screenshot is `vm screenshot CONFIG VM FILE`: the VM's screen
// as a PNG, written to a new FILE ("-": stdout).
func (a vmCmds) screenshot() *cobra.Command {
	return &cobra.Command{
		Use:   "screenshot CONFIG VM FILE",
		Short: "Save a running VM's screen as a PNG (FILE - for stdout)",
		Long: `Save a PNG of a running VM's screen (its VGA display, what the web
console's VNC viewer shows). The daemon takes at most one screendump per VM
every 2 seconds and serves the last one meanwhile. FILE must not exist.`,
		Args: exactArgs("CONFIG", "VM", "FILE"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			png, _, err := a.client.VMs().Screen(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if args[2] == "-" {
				_, err = a.stdout.Write(png)
				return err
			}
			f, err := os.OpenFile(args[2], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return usagef("screenshot: %v", err)
			}
			if _, err := f.Write(png); err != nil {
				f.Close()
				os.Remove(args[2])
				return fmt.Errorf("screenshot %s: %w", args[2], err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("screenshot %s: %w", args[2], err)
			}
			return a.done(fmt.Sprintf("Screen of %s/%s saved to %s (%d bytes).", args[0], args[1], args[2], len(png)))
		}),
	}
}

// consoleLink is `vm console-link create|list|revoke`.
func (a vmCmds) consoleLink() *cobra.Command {
	var expiresIn string
	create := &cobra.Command{
		Use:   "create CONFIG VM [--expires-in 1h]",
		Short: "Make a link that opens this VM's consoles, and nothing else, for a while",
		Long: `Make a time-limited, revocable link to the consoles (serial, screen,
VNC) of one VM: whoever has it can use them, with your rights, and nothing
else. It expires after --expires-in (default 1h, at most 30d); revoke it
sooner with "vm console-link revoke ID". The link is printed once.`,
		Args: exactArgs("CONFIG", "VM"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			l, err := a.client.ConsoleLinks().Create(cmd.Context(), args[0], args[1], expiresIn)
			if err != nil {
				return err
			}
			l.URL = strings.TrimSuffix(a.server, "/") + l.URL
			return a.print(l, func(w io.Writer) {
				row(w, "URL:", l.URL)
				row(w, "ID:", l.ID)
				row(w, "VM:", l.Config+"/"+l.VM)
				row(w, "Expires:", when(l.ExpiresAt))
				fmt.Fprintln(w, "The link is not shown again; revoke it with: stagehand vm console-link revoke "+l.ID)
			})
		}),
	}
	create.Flags().StringVar(&expiresIn, "expires-in", "", "how long the link works (30m, 8h, 7d; default 1h)")
	return a.group("console-link", "Make, list and revoke links to one VM's consoles",
		create,
		lister[wire.ConsoleLink]{
			use: "list", short: "List your console links (everyone's for a system administrator)",
			fetch: func(ctx context.Context, _ string) ([]wire.ConsoleLink, error) {
				return a.client.ConsoleLinks().List(ctx)
			},
			header: []any{"ID", "VM", "USER", "STATE", "EXPIRES"},
			row: func(l wire.ConsoleLink) []any {
				return []any{l.ID, l.Config + "/" + l.VM, l.User, l.State, when(l.ExpiresAt)}
			},
		}.command(a.app),
		&cobra.Command{
			Use:   "revoke ID",
			Short: "Revoke a console link: it stops working at once",
			Args:  exactArgs("ID"),
			RunE: a.run(func(cmd *cobra.Command, args []string) error {
				if err := a.client.ConsoleLinks().Revoke(cmd.Context(), args[0]); err != nil {
					return err
				}
				return a.done(fmt.Sprintf("Console link %s revoked.", args[0]))
			}),
		},
	)
}

// interactiveConsole joins the terminal to the console in raw mode until
// Ctrl-], the console closing or ctx ending.
func (a vmCmds) interactiveConsole(ctx context.Context, conn net.Conn, in *os.File, name string) error {
	fd := int(in.Fd())
	saved, err := term.MakeRaw(fd)
	if err != nil {
		return fmt.Errorf("console: put the terminal in raw mode: %w", err)
	}
	defer term.Restore(fd, saved)
	fmt.Fprintf(a.stderr, "Connected to the console of %s. Ctrl-] detaches.\r\n", name)

	out := make(chan struct{})
	go func() {
		defer close(out)
		_, _ = io.Copy(a.stdout, conn)
	}()
	detached := make(chan struct{})
	// This goroutine may stay blocked reading the terminal after a detach;
	// the process ends soon after.
	go func() {
		defer close(detached)
		_ = copyUntilDetach(conn, in)
	}()
	msg := "Detached."
	select {
	case <-detached:
	case <-out:
		msg = "The console closed."
	case <-ctx.Done():
	}
	conn.Close()
	<-out
	fmt.Fprintf(a.stderr, "\r\n%s\r\n", msg)
	return nil
}

// copyUntilDetach copies src to dst up to the first detachKey.
func copyUntilDetach(dst io.Writer, src io.Reader) error {
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			i := bytes.IndexByte(chunk, detachKey)
			if i >= 0 {
				chunk = chunk[:i]
			}
			if len(chunk) > 0 {
				if _, werr := dst.Write(chunk); werr != nil {
					return werr
				}
			}
			if i >= 0 {
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

// pipedConsole sends stdin to the console and the console to stdout; after
// stdin ends it waits for the console to be quiet (see consoleQuiet). It
// ends early when the console closes or ctx ends.
func (a vmCmds) pipedConsole(ctx context.Context, conn net.Conn) {
	activity := make(chan struct{}, 1)
	out := make(chan struct{})
	go func() {
		defer close(out)
		_, _ = io.Copy(a.stdout, &activityReader{r: conn, activity: activity})
	}()
	in := make(chan struct{})
	go func() {
		defer close(in)
		_, _ = io.Copy(conn, a.stdin)
	}()

	select {
	case <-in:
		quiet := time.NewTimer(consoleQuiet)
		defer quiet.Stop()
		limit := time.NewTimer(consoleLingerMax)
		defer limit.Stop()
	linger:
		for {
			select {
			case <-activity:
				quiet.Reset(consoleQuiet)
			case <-quiet.C:
				break linger
			case <-limit.C:
				break linger
			case <-out:
				break linger
			case <-ctx.Done():
				break linger
			}
		}
	case <-out:
	case <-ctx.Done():
	}
	conn.Close()
	<-out // every byte read is written before the command returns
}

// activityReader signals every successful read on activity, without
// blocking.
type activityReader struct {
	r        io.Reader
	activity chan<- struct{}
}

func (r *activityReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		select {
		case r.activity <- struct{}{}:
		default:
		}
	}
	return n, err
}
