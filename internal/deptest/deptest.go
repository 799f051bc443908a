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

// NeverImports fails t when pkg's own code (tests excluded) imports one of
// forbidden (or a package below one of them). It is for a layer that may
// reach a package only through the layer beneath: api uses the lab, which
// drives the hypervisor, but never the hypervisor itself.
func NeverImports(t TB, pkg string, forbidden ...string) {
	t.Helper()
	for _, imp := range goList(t, pkg, "-f", "{{join .Imports \"\\n\"}}") {
		for _, f := range forbidden {
			if imp == f || strings.HasPrefix(imp, f+"/") {
				t.Errorf("%s imports %s, which it must not", pkg, imp)
			}
		}
	}
}

// Deps lists the project packages pkg depends on, directly or not, pkg
// excluded. A failing `go list` fails the test: a dependency rule that
// cannot be checked has not passed.
func Deps(t TB, pkg string) []string {
	t.Helper()
	return goList(t, pkg, "-deps")
}

// Packages lists the project packages that match pattern ("./..." style,
// by import path: stagehand/internal/lab/...), for rules that hold for a
// package and every package below it.
func Packages(t TB, pattern string) []string {
	t.Helper()
	return goList(t, pattern)
}

// goList runs `go list FLAGS pkg` and returns the project packages it
// prints, pkg excluded.
func goList(t TB, pkg string, flags ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append(append([]string{"list"}, flags...), pkg)...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %s %s: %v %s", strings.Join(flags, " "), pkg, err, msg)
	}
	var deps []string
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, Module) && dep != pkg {
			deps = append(deps, dep)
		}
	}
	return deps
}
