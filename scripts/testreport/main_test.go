package main

import (
	"bytes"
	"strings"
	"testing"
)

const stream = `{"Action":"start","Package":"p/a"}
{"Action":"run","Package":"p/a","Test":"TestOK"}
{"Action":"output","Package":"p/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"pass","Package":"p/a","Test":"TestOK","Elapsed":1.5}
{"Action":"run","Package":"p/a","Test":"TestKVM"}
{"Action":"output","Package":"p/a","Test":"TestKVM","Output":"=== RUN   TestKVM\n"}
{"Action":"output","Package":"p/a","Test":"TestKVM","Output":"    a_test.go:9: no usable KVM here\n"}
{"Action":"output","Package":"p/a","Test":"TestKVM","Output":"--- SKIP: TestKVM (0.00s)\n"}
{"Action":"skip","Package":"p/a","Test":"TestKVM","Elapsed":0}
{"Action":"run","Package":"p/a","Test":"TestDomain"}
{"Action":"output","Package":"p/a","Test":"TestDomain","Output":"    a_test.go:20: qemu-img not installed\n"}
{"Action":"skip","Package":"p/a","Test":"TestDomain","Elapsed":0}
{"Action":"output","Package":"p/a","Output":"ok  \tp/a\t1.6s\n"}
{"Action":"pass","Package":"p/a","Elapsed":1.6}
{"Action":"run","Package":"p/b","Test":"TestBroken"}
{"Action":"output","Package":"p/b","Test":"TestBroken","Output":"    b_test.go:3: want 2, got 3\n"}
{"Action":"fail","Package":"p/b","Test":"TestBroken","Elapsed":0.1}
{"Action":"output","Package":"p/b","Output":"FAIL\tp/b\t0.2s\n"}
{"Action":"fail","Package":"p/b","Elapsed":0.2}
`

func TestReportCountsAndShowsFailures(t *testing.T) {
	var out bytes.Buffer
	res, err := read(strings.NewReader(stream), &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.passed != 1 || res.failed != 1 || res.skipped != 2 {
		t.Fatalf("counts = %d/%d/%d, want 1 passed, 1 failed, 2 skipped", res.passed, res.failed, res.skipped)
	}
	if ok := report(&out, res, nil, false, 5); ok {
		t.Error("a run with a failed test reported success")
	}
	for _, want := range []string{"--- FAIL: TestBroken (p/b)", "want 2, got 3", "ok  \tp/a", "p/a TestKVM: a_test.go:9: no usable KVM here", "1 passed, 1 failed, 2 skipped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUnlistedSkipFailsTheRun(t *testing.T) {
	only := strings.Join([]string{
		`{"Action":"run","Package":"p/a","Test":"TestKVM"}`,
		`{"Action":"output","Package":"p/a","Test":"TestKVM","Output":"    a_test.go:9: no usable KVM here\n"}`,
		`{"Action":"skip","Package":"p/a","Test":"TestKVM"}`,
		`{"Action":"run","Package":"p/a","Test":"TestDomain/sub"}`,
		`{"Action":"skip","Package":"p/a","Test":"TestDomain/sub"}`,
	}, "\n")
	allowKVM := []allowance{{pkg: "p/a", test: "TestKVM", reason: "no usable KVM on these machines"}}
	tests := []struct {
		name    string
		allowed []allowance
		wantOK  bool
		want    string
	}{
		{"one unlisted", allowKVM, false, "p/a TestDomain/sub: " + "  (NOT ALLOWED)"},
		{"prefix allows subtests", append(allowKVM, allowance{pkg: "p/a", test: "TestDomain/*", reason: "r"}), true, "(allowed: r)"},
		{"other package does not match", []allowance{{pkg: "p/b", test: "TestKVM", reason: "r"}, {pkg: "p/a", test: "TestDomain*", reason: "r"}}, false, "TestKVM: a_test.go:9: no usable KVM here  (NOT ALLOWED)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := read(strings.NewReader(only), &out)
			if err != nil {
				t.Fatal(err)
			}
			if ok := report(&out, res, tc.allowed, true, 0); ok != tc.wantOK {
				t.Errorf("ok = %v, want %v\n%s", ok, tc.wantOK, out.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
}

func TestBuildFailureFailsTheRun(t *testing.T) {
	s := `{"ImportPath":"p/c","Action":"build-output","Output":"c.go:1: syntax error\n"}
{"ImportPath":"p/c","Action":"build-fail"}
{"Action":"output","Package":"p/c","Output":"FAIL\tp/c [build failed]\n"}
{"Action":"fail","Package":"p/c"}
`
	var out bytes.Buffer
	res, err := read(strings.NewReader(s), &out)
	if err != nil {
		t.Fatal(err)
	}
	if report(&out, res, nil, true, 0) {
		t.Error("a build failure reported success")
	}
	if !strings.Contains(out.String(), "c.go:1: syntax error") {
		t.Errorf("build output not shown:\n%s", out.String())
	}
}

func TestEmptyInputIsAnError(t *testing.T) {
	if _, err := read(strings.NewReader("not json\n"), &bytes.Buffer{}); err == nil {
		t.Error("no events accepted as a run")
	}
}
