package revert

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFailUndoesNewestFirstAndLogsFailures(t *testing.T) {
	var buf bytes.Buffer
	r := New(slog.New(slog.NewTextHandler(&buf, nil)))
	var got []string
	undo := func(name string, err error) func() error {
		return func() error { got = append(got, name); return err }
	}
	r.Add("bridge", undo("bridge", nil))
	r.Add("tap", undo("tap", errors.New("device busy")))
	r.Add("qemu", undo("qemu", nil))
	err := r.Fail()
	if diff := cmp.Diff([]string{"qemu", "tap", "bridge"}, got); diff != "" {
		t.Errorf("undo order (-want +got):\n%s", diff)
	}
	if err == nil || !strings.Contains(err.Error(), "device busy") {
		t.Errorf("Fail = %v, want the failed undo's error", err)
	}
	if !strings.Contains(buf.String(), "step=tap") || !strings.Contains(buf.String(), "device busy") {
		t.Errorf("failed undo not logged with its step: %q", buf.String())
	}
	if err := r.Fail(); err != nil || len(got) != 3 {
		t.Errorf("second Fail ran undos again: %v, %v", err, got)
	}
}

func TestSuccessKeepsEverything(t *testing.T) {
	r := New(nil)
	ran := false
	r.Add("x", func() error { ran = true; return nil })
	r.Success()
	if err := r.Fail(); err != nil || ran {
		t.Errorf("Fail after Success: err %v, undo ran %v", err, ran)
	}
}

func TestCloneUndoesAsOneStepOfTheCaller(t *testing.T) {
	var got []string
	inner := New(nil)
	inner.Add("a", func() error { got = append(got, "a"); return nil })
	inner.Add("b", func() error { got = append(got, "b"); return nil })
	outer := New(nil)
	outer.Add("inner", inner.Clone().Fail)
	inner.Success()
	if err := inner.Fail(); err != nil || len(got) != 0 {
		t.Fatalf("inner undone after Success: %v %v", err, got)
	}
	outer.Add("c", func() error { got = append(got, "c"); return nil })
	outer.Fail()
	if diff := cmp.Diff([]string{"c", "b", "a"}, got); diff != "" {
		t.Errorf("undo order (-want +got):\n%s", diff)
	}
}
