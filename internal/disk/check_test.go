package disk

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	requireQemu(t)
	t.Parallel()
	dir := t.TempDir()
	good := newQcow2(t, join(dir, "good.qcow2"), "16M")
	qemuIO(t, good, "write -P 0xaa 0 1M")

	leaky := copyFile(t, good, join(dir, "leaky.qcow2"))
	// One cluster more at the end of the file, counted but unreferenced.
	fi, err := os.Stat(leaky)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(leaky, fi.Size()+64<<10); err != nil {
		t.Fatal(err)
	}
	setRefcount(t, leaky, int(fi.Size()/(64<<10)), 1)

	corrupt := copyFile(t, good, join(dir, "corrupt.qcow2"))
	setRefcount(t, corrupt, 0, 0) // the header cluster is in use

	truncated := copyFile(t, good, join(dir, "truncated.qcow2"))
	if err := os.Truncate(truncated, 100000); err != nil {
		t.Fatal(err)
	}
	badHeader := copyFile(t, good, join(dir, "bad-header.qcow2"))
	f, err := os.OpenFile(badHeader, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("XXXX"), 0)
	f.Close()

	tests := []struct {
		name, path string
		kind       error  // nil: any error
		msg        string // part of the message; "" for no error
	}{
		{"consistent", good, nil, ""},
		{"leaks", leaky, ErrLeaks, "1 leaked clusters"},
		{"corrupt refcount", corrupt, ErrCorrupt, "1 corruptions"},
		{"truncated", truncated, ErrCorrupt, "corruptions"},
		{"overwritten header", badHeader, nil, "could not check"},
		{"missing", join(dir, "missing.qcow2"), nil, "could not check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New().Check(context.Background(), tt.path)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("err = %v, want one naming the file and saying %q", err, tt.msg)
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("err = %v, want it to wrap %v", err, tt.kind)
			}
			t.Log(err)
		})
	}
}
