package command

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		stdout   string
		exitCode int    // -1: no error expected when wantErr is ""
		wantErr  string // substring of the error, "" for success
	}{
		{name: "stdout", args: []string{"-c", "echo hello"}, stdout: "hello\n", exitCode: -1},
		{
			name: "stderr in error", args: []string{"-c", "echo partial; echo oops >&2; exit 3"},
			stdout: "partial\n", exitCode: 3, wantErr: "exit status 3: oops",
		},
		{
			name: "multi-line stderr on one line", args: []string{"-c", "printf 'one\\n\\ntwo\\n' >&2; exit 1"},
			exitCode: 1, wantErr: "exit status 1: one; two",
		},
		{
			name: "command line in error", args: []string{"-c", "exit 2", "with space"},
			exitCode: 2, wantErr: `sh -c "exit 2" "with space": exit status 2`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Runner{}.Run(context.Background(), "sh", tt.args...)
			if string(out) != tt.stdout {
				t.Errorf("stdout = %q, want %q", out, tt.stdout)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if got := ExitCode(err); got != tt.exitCode {
				t.Errorf("ExitCode = %d, want %d", got, tt.exitCode)
			}
		})
	}
}

func TestRunMissingBinary(t *testing.T) {
	_, err := Runner{}.Run(context.Background(), "stagehand-no-such-binary", "x")
	if err == nil || !strings.Contains(err.Error(), "stagehand-no-such-binary x:") {
		t.Fatalf("err = %v, want one naming the command", err)
	}
	if got := ExitCode(err); got != -1 {
		t.Errorf("ExitCode = %d, want -1", got)
	}
}

func TestRunStderrBounded(t *testing.T) {
	_, err := Runner{}.Run(context.Background(), "sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if len(e.Stderr) > maxStderr+10 || !strings.HasSuffix(e.Stderr, "[...]") {
		t.Errorf("stderr kept %d bytes (suffix %q), want at most %d and a truncation mark",
			len(e.Stderr), e.Stderr[max(len(e.Stderr)-8, 0):], maxStderr)
	}
}

func TestContextEndKillsProcess(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	runners := map[string]func(context.Context) error{
		"Run": func(ctx context.Context) error {
			_, err := Runner{}.Run(ctx, "sleep", "30")
			return err
		},
		"RunLines": func(ctx context.Context) error {
			return Runner{}.RunLines(ctx, func(string) {}, "sh", "-c", "echo start; exec sleep 30")
		},
	}
	for _, tt := range tests {
		for rname, runFn := range runners {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				ctx, cancel := tt.ctx()
				defer cancel()
				start := time.Now()
				err := runFn(ctx)
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want it to wrap %v", err, tt.want)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("took %v: process not killed promptly", d)
				}
			})
		}
	}
}

func TestRunLines(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   []string
	}{
		{"newlines", `printf 'a\nb\n'`, []string{"a", "b"}},
		{"carriage returns", `printf '    (0.00/100%%)\r    (50.00/100%%)\r    (100.00/100%%)\r\n'`,
			[]string{"    (0.00/100%)", "    (50.00/100%)", "    (100.00/100%)"}},
		{"no final separator", `printf 'x\ny'`, []string{"x", "y"}},
		{"empty", `true`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := Runner{}.RunLines(context.Background(), func(l string) { got = append(got, l) }, "sh", "-c", tt.script)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRunLinesError(t *testing.T) {
	var got []string
	err := Runner{}.RunLines(context.Background(), func(l string) { got = append(got, l) },
		"sh", "-c", "echo before; echo failed >&2; exit 4")
	if ExitCode(err) != 4 || !strings.Contains(err.Error(), "exit status 4: failed") {
		t.Fatalf("err = %v, want exit status 4 with stderr", err)
	}
	if !slices.Equal(got, []string{"before"}) {
		t.Errorf("lines = %q, want [before]", got)
	}
}

// TestRunLogs shows the command line logged at debug to the runner's own
// logger, not the default one.
func TestRunLogs(t *testing.T) {
	var buf bytes.Buffer
	r := Runner{Log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if _, err := r.Run(context.Background(), "echo", "logged"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"level=DEBUG", "msg=\"run command\"", "cmd=echo", "args=[logged]", "duration="} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log %q lacks %q", buf.String(), want)
		}
	}
}
