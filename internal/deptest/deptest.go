// Package deptest keeps the layering honest: a test names a package and the
// project packages it may depend on (directly or not), and fails when `go
// list -deps` shows another (after Tailscale's tstest/deptest).
package deptest

import (
	"os/exec"
	"strings"
)

// TB is the part of testing.TB the checks use.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Module is the import path prefix of this project's packages.
const Module = "stagehand/"

// Only fails t when pkg depends, directly or through others, on a project
// package not in allowed (pkg itself is always allowed). Standard library
// and third-party packages are not checked.
func Only(t TB, pkg string, allowed ...string) {
	t.Helper()
	ok := map[string]bool{pkg: true}
	for _, a := range allowed {
		ok[a] = true
	}
	for _, dep := range Deps(t, pkg) {
		if !ok[dep] {
			t.Errorf("%s depends on %s; it may depend only on %s", pkg, dep, strings.Join(allowed, ", "))
		}
	}
}

// Never fails t when pkg depends, directly or through others, on one of
// forbidden (or on a package below one of them).
func Never(t TB, pkg string, forbidden ...string) {
	t.Helper()
	for _, dep := range Deps(t, pkg) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("%s depends on %s, which it must not", pkg, dep)
			}
		}
	}
}

// Deps lists the project packages pkg depends on, directly or not, pkg
// excluded. A failing `go list` fails the test: a dependency rule that
// cannot be checked has not passed.
func Deps(t TB, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v %s", pkg, err, msg)
	}
	var deps []string
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, Module) && dep != pkg {
			deps = append(deps, dep)
		}
	}
	return deps
}
