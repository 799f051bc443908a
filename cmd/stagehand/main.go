// Command stagehand is the Stagehand daemon and command line. main only
// builds the dependencies: `serve` becomes a daemon.Config run by
// internal/daemon, every other command goes to internal/cli.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"stagehand/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default action so that a
		// second one kills a shutdown that hangs.
		<-ctx.Done()
		stop()
	}()
	code := cli.Run(ctx, os.Args[1:], deps(os.Stdin, os.Stdout, os.Stderr, os.Getenv))
	stop()
	os.Exit(code)
}

// deps are what the CLI runs with: the process's streams and environment,
// and the serve command.
func deps(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) cli.Deps {
	return cli.Deps{
		Stdin:    stdin,
		Stdout:   stdout,
		Stderr:   stderr,
		Getenv:   getenv,
		Commands: []*cobra.Command{serveCommand(getenv), manCommand()},
	}
}
