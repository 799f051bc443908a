// Command stagehand is the Stagehand daemon and command line. main only
// builds the dependencies (the SQLite store, the qemu-img disk tool, the
// signal context) and hands them to internal/cli.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"stagehand/internal/cli"
	"stagehand/internal/disk"
	"stagehand/internal/lab"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
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

// deps are the real implementations the CLI runs with.
func deps(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) cli.Deps {
	return cli.Deps{
		Stdin:  stdin,
		Stdout: stdout,
		Stderr: stderr,
		Getenv: getenv,
		OpenStore: func(ctx context.Context, path string) (store.Store, error) {
			db, err := sqlite.Open(ctx, path)
			if err != nil {
				return nil, err
			}
			return db, nil
		},
		NewDiskTool: func() lab.DiskTool { return disk.New() },
	}
}
