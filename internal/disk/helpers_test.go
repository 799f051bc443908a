package disk

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These helpers drive the real qemu-img and qemu-io directly, not through
// the code under test, so that fixtures do not depend on what is tested.

func requireQemu(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install qemu-utils)", bin)
		}
	}
}

func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newQcow2 creates an empty standalone qcow2 of the given virtual size.
func newQcow2(t testing.TB, path, size string) string {
	t.Helper()
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", path, size)
	return path
}

// newDelta creates a delta with an absolute backing path, independently of
// CreateDelta.
func newDelta(t testing.TB, parent, path string) string {
	t.Helper()
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", parent, path)
	return path
}

// qemuIO runs qemu-io commands (e.g. "write -P 0xaa 0 1M") on a qcow2.
func qemuIO(t testing.TB, path string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	runTool(t, "qemu-io", append(args, path)...)
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// dirNames lists the names in dir, to prove an operation left nothing.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// recordedBacking returns the backing file name exactly as stored in the
// qcow2 header.
func recordedBacking(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := binary.BigEndian.Uint64(b[8:16])
	n := binary.BigEndian.Uint32(b[16:20])
	return string(b[off : off+uint64(n)])
}

// setRefcount overwrites the 16-bit refcount of one cluster in the first
// refcount block of a qcow2 (refcount_bits=16, the default), to fabricate
// leaks and corruptions.
func setRefcount(t testing.TB, path string, cluster int, refcount uint16) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, 104)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	if order := binary.BigEndian.Uint32(hdr[96:100]); order != 4 {
		t.Fatalf("refcount_order %d, want 4", order)
	}
	table := int64(binary.BigEndian.Uint64(hdr[48:56]))
	entry := make([]byte, 8)
	if _, err := f.ReadAt(entry, table); err != nil {
		t.Fatal(err)
	}
	block := int64(binary.BigEndian.Uint64(entry))
	val := binary.BigEndian.AppendUint16(nil, refcount)
	if _, err := f.WriteAt(val, block+2*int64(cluster)); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, src, dst string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func join(dir, name string) string { return filepath.Join(dir, name) }
