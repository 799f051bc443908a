package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestCompletionTableMatchesCommands keeps the completion tables in step
// with the commands: each path in argCompletions is a command that takes
// at least that many arguments (its Use names them), each flag in
// flagCompletions exists somewhere, each fixed value is named in the help
// of every flag of that name, and each command whose first argument names
// an existing configuration is in the table.
func TestCompletionTableMatchesCommands(t *testing.T) {
	a := &app{deps: Deps{Getenv: func(string) string { return "" }}}
	root := a.rootCommand()
	paths := map[string]*cobra.Command{}
	flagSeen := map[string]bool{}
	walkCommands(root, func(cmd *cobra.Command) {
		paths[commandPath(cmd)] = cmd
		for name, fc := range flagCompletions {
			f := cmd.LocalFlags().Lookup(name)
			if f == nil {
				continue
			}
			flagSeen[name] = true
			for _, v := range fc.choices {
				if !strings.Contains(f.Usage, v) {
					t.Errorf("%s --%s: completion offers %q, which its help %q does not name", cmd.CommandPath(), name, v, f.Usage)
				}
			}
			if _, ok := cmd.GetFlagCompletionFunc(name); !ok {
				t.Errorf("%s --%s has no completion", cmd.CommandPath(), name)
			}
		}
	})
	for path, kinds := range argCompletions {
		cmd, ok := paths[path]
		if !ok {
			t.Errorf("argCompletions names %q, which is no command", path)
			continue
		}
		if n := len(useArgs(cmd.Use)); len(kinds) > n {
			t.Errorf("argCompletions gives %q %d arguments; its Use %q names %d", path, len(kinds), cmd.Use, n)
		}
		if cmd.ValidArgsFunction == nil {
			t.Errorf("%q has no ValidArgsFunction", path)
		}
	}
	for name := range flagCompletions {
		if !flagSeen[name] {
			t.Errorf("flagCompletions names --%s, which no command has", name)
		}
	}
	// A command whose first argument is an existing object should
	// complete it: those named CONFIG, or NAME/SRC under config.
	for path, cmd := range paths {
		args := useArgs(cmd.Use)
		if len(args) == 0 {
			continue
		}
		existing := args[0] == "CONFIG" || (strings.HasPrefix(path, "config ") && (args[0] == "NAME" || args[0] == "SRC") && path != "config create")
		if _, ok := argCompletions[path]; existing && !ok {
			t.Errorf("%q takes %s but completes nothing: add it to argCompletions", path, args[0])
		}
	}
}

// useArgs are the positional arguments a command's Use line names: the
// upper-case words after the command's name, before any flag.
func useArgs(use string) []string {
	var out []string
	for _, w := range strings.Fields(use)[1:] {
		w = strings.Trim(w, "[]()")
		if strings.HasPrefix(w, "-") || w == "|" {
			break
		}
		if w != "" && w == strings.ToUpper(w) {
			out = append(out, w)
		}
	}
	return out
}
