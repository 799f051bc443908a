package deptest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// recorder is a TB that keeps what the checks report.
type recorder struct{ errors []string }

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(f string, a ...any) { r.errors = append(r.errors, fmt.Sprintf(f, a...)) }
func (r *recorder) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

func TestDepsSeesIndirectDependencies(t *testing.T) {
	deps := Deps(t, "stagehand/internal/client")
	if !slices.Contains(deps, "stagehand/internal/api/wire") {
		t.Errorf("Deps(client) = %v, want it to hold api/wire", deps)
	}
	if slices.Contains(deps, "stagehand/internal/client") {
		t.Errorf("Deps(client) = %v holds the package itself", deps)
	}
}

func TestRulesReportViolations(t *testing.T) {
	tests := []struct {
		name  string
		check func(TB)
		want  []string // substrings, one per reported violation
	}{
		{"only: allowed", func(r TB) {
			Only(r, "stagehand/internal/client", "stagehand/internal/api/wire", "stagehand/internal/errdefs")
		}, nil},
		{"only: one missing", func(r TB) { Only(r, "stagehand/internal/client", "stagehand/internal/errdefs") },
			[]string{"depends on stagehand/internal/api/wire"}},
		{"never: clean", func(r TB) { Never(r, "stagehand/internal/client", "stagehand/internal/lab") }, nil},
		{"never: a parent prefix forbids its children", func(r TB) { Never(r, "stagehand/internal/client", "stagehand/internal/api") },
			[]string{"stagehand/internal/api/wire, which it must not"}},
		{"never imports: a direct import", func(r TB) { NeverImports(r, "stagehand/internal/client", "stagehand/internal/api") },
			[]string{"imports stagehand/internal/api/wire"}},
		// The daemon reaches ipam only through the lab.
		{"never imports: an indirect dependency is not an import", func(r TB) {
			NeverImports(r, "stagehand/internal/daemon", "stagehand/internal/ipam")
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			tc.check(r)
			if len(r.errors) != len(tc.want) {
				t.Fatalf("reported %q, want %d violations", r.errors, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(r.errors[i], w) {
					t.Errorf("violation %q lacks %q", r.errors[i], w)
				}
			}
		})
	}
}
