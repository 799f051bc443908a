package disk

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// fuzzQcow2Budget bounds the native reader on one fuzz input: inputs are
// at most a few MiB, so anything slower is work out of proportion to the
// file, which an uploaded image could use to hold a request.
const fuzzQcow2Budget = 2 * time.Second

// FuzzQcow2Reader feeds arbitrary bytes, as a file, to everything that
// reads images users upload without qemu-img: the format sniffer, the
// header reader and checker, the backing-name reader and the L1/L2 table
// walk. None may panic, and the walk must finish within its budget (its
// work must be bounded by the file, not by what the header claims). The
// seed corpus (testdata/fuzz/FuzzQcow2Reader) holds small images made by
// qemu-img (512-byte clusters): v2 and v3, a backing file, data, zeroes,
// compressed clusters, and a text file; extended L2 entries are seeded at
// run time.
func FuzzQcow2Reader(f *testing.F) {
	for _, size := range []uint64{0, 512, 1 << 20, 1 << 40} {
		d, err := encodeDelta(size, "base.qcow2")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d.bytes())
	}
	f.Add(repeatedL2Image(4))
	// Extended L2 entries need 16 KiB clusters, too big an image for the
	// stored corpus: made here when qemu-img is at hand.
	if _, err := exec.LookPath("qemu-img"); err == nil {
		p := filepath.Join(f.TempDir(), "ext.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=16384,extended_l2=on", p, "32K").CombinedOutput(); err != nil {
			f.Fatalf("qemu-img create: %v\n%s", err, out)
		}
		if out, err := exec.Command("qemu-io", "-c", "write -P 1 0 2k", "-c", "write -z 8k 2k", p).CombinedOutput(); err != nil {
			f.Fatalf("qemu-io: %v\n%s", err, out)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("QFI\xfb"))
	f.Add([]byte("this is not a disk image\n"))

	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		sniff(data[:min(len(data), sniffLen)], data[max(0, len(data)-512):])
		path := filepath.Join(dir, "image")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		if _, err := sniffFile(file, int64(len(data))); err != nil {
			t.Fatalf("sniff: %v", err)
		}
		backingNameNative(path)
		h, err := readQcow2Header(file)
		if err != nil {
			return
		}
		h.check()
		ctx, cancel := context.WithTimeout(context.Background(), fuzzQcow2Budget)
		defer cancel()
		start := time.Now()
		if _, err := mapsAnyCluster(ctx, file, h); errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("L1/L2 walk of a %d-byte file ran out of its %v budget (%v)", len(data), fuzzQcow2Budget, time.Since(start))
		}
	})
}

// repeatedL2Image is a version 3 image with 64 KiB clusters whose L1
// table has l1Entries entries, all pointing at one L2 table that maps
// nothing: a walk that rereads the L2 table for each entry reads
// l1Entries x 64 KiB from a file of l1Entries x 8 bytes.
func repeatedL2Image(l1Entries uint64) []byte {
	const cs = 64 << 10
	be := binary.BigEndian
	size := l1Entries * (cs / 8) * cs // every L1 entry needed
	l1Off := uint64(cs)
	l1Len := (l1Entries*8 + cs - 1) / cs * cs
	l2Off := l1Off + l1Len
	img := make([]byte, l2Off+cs)
	copy(img, qcow2Magic)
	be.PutUint32(img[hdrVersion:], 3)
	be.PutUint32(img[hdrClusterBits:], 16)
	be.PutUint64(img[hdrSize:], size)
	be.PutUint32(img[hdrL1Size:], uint32(l1Entries))
	be.PutUint64(img[hdrL1TableOffset:], l1Off)
	be.PutUint32(img[hdrRefcountOrder:], 4)
	be.PutUint32(img[hdrHeaderLength:], hdrV3Length)
	for i := uint64(0); i < l1Entries; i++ {
		be.PutUint64(img[l1Off+8*i:], l2Off)
	}
	return img
}

// The L1/L2 walk reads each L2 table once, however many L1 entries point
// at it: an uploaded image of 640 KiB must not cost 4 GiB of reads.
func TestRepeatedL2TableIsReadOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(path, repeatedL2Image(65536), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := readQcow2Header(f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	mapped, err := mapsAnyCluster(ctx, f, h)
	took := time.Since(start)
	if err != nil || mapped {
		t.Fatalf("mapsAnyCluster = %v, %v; want false, nil", mapped, err)
	}
	if took > time.Second {
		t.Errorf("walk of a %d-byte image took %v: it rereads a shared L2 table per L1 entry", 65536*8+128<<10, took)
	}
}
