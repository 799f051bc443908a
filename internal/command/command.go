// Package command runs external programs (qemu-img, nft, ...) for the rest
// of Stagehand: it logs each command, captures stderr into the error, and
// kills the process when the context ends, or when the daemon itself dies.
// It is the only place that shells out.
package command

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// maxStderr bounds how much stderr an Error keeps; a chatty program must not
// grow memory without limit, and the first lines say what went wrong.
const maxStderr = 8 << 10

// waitDelay is how long Wait waits for the output pipes to close after the
// process has been killed (a forked child could otherwise hold them open).
const waitDelay = 5 * time.Second

// Error is returned when a command cannot start, exits non-zero, or is
// killed because its context ended. It unwraps to the cause: an
// *exec.ExitError, an exec start error, or the context's error.
type Error struct {
	Name   string
	Args   []string
	Stderr string // trimmed, newlines folded into "; "
	Err    error
}

func (e *Error) Error() string {
	msg := commandLine(e.Name, e.Args) + ": " + e.Err.Error()
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode returns the exit status of the command, or -1 when it did not
// exit by itself (not started, killed, cancelled).
func (e *Error) ExitCode() int {
	var exit *exec.ExitError
	if errors.As(e.Err, &exit) {
		return exit.ExitCode()
	}
	return -1
}

// ExitCode returns the exit status carried by err when err comes from this
// package, and -1 otherwise. It lets callers map documented exit codes
// (qemu-img check, compare) without type assertions.
func ExitCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.ExitCode()
	}
	return -1
}

// Runner runs external programs and logs each command line, with its
// duration and error, at debug level to Log: the daemon's logger, so that
// `serve --log-level debug` shows every command run. A nil Log is
// slog.Default().
type Runner struct {
	Log *slog.Logger
}

func (r Runner) logger() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}

// Run runs name with args and returns its stdout. Stdout is returned even
// with an error, because some programs report results through their exit
// code (qemu-img check prints its report and exits 2 or 3).
func (r Runner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout bytes.Buffer
	err := run(ctx, r.logger(), name, args, func(cmd *exec.Cmd) (func() error, error) {
		cmd.Stdout = &stdout
		return func() error { return nil }, nil
	})
	return stdout.Bytes(), err
}

// RunLines runs name with args and calls onLine with each line of stdout as
// it arrives, without the separator. Lines end at '\n' or '\r', so progress
// meters that redraw one line with '\r' (qemu-img convert -p) are reported
// step by step. Empty lines are skipped. onLine runs on the calling
// goroutine.
func (r Runner) RunLines(ctx context.Context, onLine func(line string), name string, args ...string) error {
	return run(ctx, r.logger(), name, args, func(cmd *exec.Cmd) (func() error, error) {
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		return func() error { return scanLines(pipe, onLine) }, nil
	})
}

// run starts the command, lets wire attach stdout (and return a function
// that consumes it before Wait), then waits and builds the error.
func run(ctx context.Context, log *slog.Logger, name string, args []string, wire func(*exec.Cmd) (func() error, error)) error {
	log = log.With("cmd", name, "args", args)
	log.DebugContext(ctx, "run command")
	start := time.Now()

	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = waitDelay
	// A child must not outlive the daemon: a qemu-img convert left running
	// after a SIGKILL goes on writing a file that recovery has already
	// cleaned up. The kernel sends Pdeathsig when the *thread* that forked
	// the child exits, not the process, and Go ends a thread whenever a
	// goroutine that locked it returns without unlocking (the netns code
	// does so on purpose). Holding this goroutine on its thread from Start
	// to Wait keeps any other goroutine from locking, and so ending, the
	// thread the child is tied to.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stderr := &prefixBuffer{limit: maxStderr}
	cmd.Stderr = stderr
	consume, err := wire(cmd)
	if err != nil {
		return &Error{Name: name, Args: args, Err: err}
	}
	if err := cmd.Start(); err != nil {
		return &Error{Name: name, Args: args, Err: err}
	}
	readErr := consume()
	if readErr != nil {
		// Nobody reads stdout any more: stop the process rather than let it
		// block on a full pipe.
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	log.DebugContext(ctx, "command done", "duration", time.Since(start), "err", waitErr)

	switch {
	case ctx.Err() != nil && waitErr != nil:
		// Killed because the context ended: say so, and let callers test
		// errors.Is(err, context.Canceled).
		return &Error{Name: name, Args: args, Stderr: stderr.String(), Err: ctx.Err()}
	case waitErr != nil:
		return &Error{Name: name, Args: args, Stderr: stderr.String(), Err: waitErr}
	case readErr != nil:
		return &Error{Name: name, Args: args, Err: fmt.Errorf("read stdout: %w", readErr)}
	}
	return nil
}

// scanLines calls onLine for every non-empty line of r, lines ending at
// '\n' or '\r'.
func scanLines(r io.Reader, onLine func(string)) error {
	sc := bufio.NewScanner(r)
	sc.Split(splitCRLF)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			onLine(line)
		}
	}
	return sc.Err()
}

// splitCRLF is a bufio.SplitFunc that ends a token at '\n' or '\r'.
func splitCRLF(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// commandLine renders a command for messages, quoting arguments that would
// otherwise be ambiguous.
func commandLine(name string, args []string) string {
	parts := make([]string, 0, len(args)+1)
	for _, s := range append([]string{name}, args...) {
		if s == "" || strings.ContainsAny(s, " \t\n\"'\\") {
			s = fmt.Sprintf("%q", s)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// prefixBuffer keeps the first limit bytes written to it and drops the rest.
type prefixBuffer struct {
	buf       bytes.Buffer
	limit     int
	truncated bool
}

func (b *prefixBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room < len(p) {
		b.truncated = true
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.buf.Write(p)
}

// String returns stderr on one line, so that errors print on one line.
func (b *prefixBuffer) String() string {
	lines := strings.Split(strings.TrimSpace(b.buf.String()), "\n")
	kept := lines[:0]
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			kept = append(kept, l)
		}
	}
	s := strings.Join(kept, "; ")
	if b.truncated {
		s += " [...]"
	}
	return s
}
