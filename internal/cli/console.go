package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
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

func (a *app) vmConsoleCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "console CONFIG VM",
		Short: "Attach to a running VM's serial console (Ctrl-] detaches)",
		Long: `Attach to the serial console of a running VM.

In a terminal, the terminal goes into raw mode so that every key, Ctrl-C
included, reaches the VM; Ctrl-] detaches and restores the terminal.

When stdin is not a terminal, stdin goes to the console and the console's
output to stdout; once stdin ends, the command waits until the console has
been quiet for a second (10 seconds at most) and exits, so scripts can run

  printf 'uname -a\n' | stagehand vm console web vm1`,
		Args: exactArgs("CONFIG", "VM"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			conn, err := a.client.VMConsole(ctx, args[0], args[1])
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
}

// interactiveConsole joins the terminal to the console in raw mode until
// Ctrl-], the console closing or ctx ending.
func (a *app) interactiveConsole(ctx context.Context, conn net.Conn, in *os.File, name string) error {
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
func (a *app) pipedConsole(ctx context.Context, conn net.Conn) {
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
