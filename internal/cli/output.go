package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// print writes v as indented JSON with -o json, else calls table.
func (a *app) print(v any, table func(w io.Writer)) error {
	if a.output == "json" {
		return writeJSON(a.stdout, v)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// row writes one tab-separated line. Every cell is passed through
// printable: cells show what the daemon stores (descriptions, owners,
// event details, paths), which anyone who can reach the API may have
// filled with terminal escape sequences.
func row(w io.Writer, cols ...any) {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = printable(fmt.Sprint(c))
	}
	fmt.Fprintln(w, strings.Join(parts, "\t"))
}

// printable returns s with every character a terminal would act on instead
// of showing (C0 and C1 controls such as ESC, BEL, CR, newline and tab,
// DEL, other non-printing runes, invalid UTF-8) written as a Go escape
// (\x1b, \n, \u200b), as strconv.Quote writes them; printable text,
// non-ASCII letters included, stays as it is.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r) // '\x1b', '\n', '\u200b'
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// orDash shows an empty value as "-", so table columns stay aligned.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// size formats bytes with binary units: 0 B, 512 B, 192 KiB, 1.5 GiB.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	suffix := string("KMGTPE"[exp]) + "iB"
	if v >= 10 || v == float64(int64(v)) {
		return fmt.Sprintf("%.0f %s", v, suffix)
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// when formats a time for tables, local and to the second.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// lister is a `list` command: the items fetch returns, one row each under
// header, or all as JSON with -o json. flag, when set, names the one flag
// that narrows the list (--workspace, --org, --user); fetch is given its
// value.
type lister[T any] struct {
	use, short     string
	flag, flagHelp string
	fetch          func(ctx context.Context, filter string) ([]T, error)
	header         []any
	row            func(T) []any
}

func (l lister[T]) command(a *app) *cobra.Command {
	var filter string
	cmd := &cobra.Command{
		Use:   l.use,
		Short: l.short,
		Args:  exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			items, err := l.fetch(cmd.Context(), filter)
			if err != nil {
				return err
			}
			return a.print(items, func(w io.Writer) {
				row(w, l.header...)
				for _, it := range items {
					row(w, l.row(it)...)
				}
			})
		}),
	}
	if l.flag != "" {
		cmd.Flags().StringVar(&filter, l.flag, "", l.flagHelp)
	}
	return cmd
}

// showCommand is `use ARG` (ARG, the last word of use, is the one
// argument): get fetches or changes the object ARG names and show prints
// the answer.
func showCommand[T any](a *app, use, short string, get func(ctx context.Context, arg string) (*T, error), show func(*T) error) *cobra.Command {
	return argCommand(a, use, short, func(ctx context.Context, arg string) error {
		v, err := get(ctx, arg)
		if err != nil {
			return err
		}
		return show(v)
	})
}

// argCommand is `use ARG` (ARG, the last word of use, is the one
// argument) that does fn to the object ARG names and prints nothing.
func argCommand(a *app, use, short string, fn func(ctx context.Context, arg string) error) *cobra.Command {
	words := strings.Fields(use)
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(words[len(words)-1]),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			return fn(cmd.Context(), args[0])
		}),
	}
}

// memberCommand is `use OF USER` (OF and USER, the last two words of
// use): fn adds user to, or removes user from, what OF names (an
// organization's administrators, a workspace, a group); then done, a
// format of the user and OF, is printed.
func memberCommand(a *app, use, short string, fn func(ctx context.Context, of, user string) error, done string) *cobra.Command {
	words := strings.Fields(use)
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(words[len(words)-2:]...),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if err := fn(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			return a.done(fmt.Sprintf(done, args[1], args[0]))
		}),
	}
}
