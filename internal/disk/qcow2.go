package disk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// The part of the qcow2 format (QEMU docs/interop/qcow2.txt) that
// Stagehand reads and writes itself, because starting qemu-img costs more
// than the work: the header, the empty delta qemu-img create writes, and
// the L1/L2 mapping tables. Everything else goes through qemu-img.

const qcow2Magic = "QFI\xfb"

// Header field offsets. Version 2 headers end at 72; version 3 headers
// are at least 104 bytes long.
const (
	hdrVersion               = 4
	hdrBackingFileOffset     = 8
	hdrBackingFileSize       = 16
	hdrClusterBits           = 20
	hdrSize                  = 24
	hdrCryptMethod           = 32
	hdrL1Size                = 36
	hdrL1TableOffset         = 40
	hdrRefcountTableOffset   = 48
	hdrRefcountTableClusters = 56
	hdrNbSnapshots           = 60
	hdrSnapshotsOffset       = 64
	hdrIncompatibleFeatures  = 72
	hdrCompatibleFeatures    = 80
	hdrAutoclearFeatures     = 88
	hdrRefcountOrder         = 96
	hdrHeaderLength          = 100

	hdrV2Length = 72
	hdrV3Length = 104
)

// Incompatible feature bits.
const (
	incompatDirty       = 1 << 0
	incompatCorrupt     = 1 << 1
	incompatDataFile    = 1 << 2
	incompatCompression = 1 << 3
	incompatExtendedL2  = 1 << 4
	incompatKnown       = incompatDirty | incompatCorrupt | incompatDataFile | incompatCompression | incompatExtendedL2
)

// Mapping table entries.
const (
	tableOffsetMask = 0x00ff_ffff_ffff_fe00 // L1 and L2 entries: bits 9-55, the host offset
	l2Compressed    = 1 << 62
	l2ZeroFlag      = 1 << 0 // version 3 without extended L2 only
)

// Limits QEMU enforces, so that a file we accept QEMU accepts too.
const (
	minClusterBits    = 9
	maxClusterBits    = 21
	maxL1Bytes        = 32 << 20 // QCOW_MAX_L1_SIZE
	maxBackingNameLen = 1023
)

// Header extension types.
const (
	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extFeatureNames  = 0x6803f857
)

// qcow2Header holds the fixed header fields. For version 2 images the
// version 3 fields read as their defaults.
type qcow2Header struct {
	version               uint32
	backingFileOffset     uint64
	backingFileSize       uint32
	clusterBits           uint32
	size                  uint64
	cryptMethod           uint32
	l1Size                uint32
	l1TableOffset         uint64
	refcountTableOffset   uint64
	refcountTableClusters uint32
	nbSnapshots           uint32
	snapshotsOffset       uint64
	incompatible          uint64
	compatible            uint64
	autoclear             uint64
	refcountOrder         uint32
	headerLength          uint32
}

// errNotQcow2 says a file does not start with the qcow2 magic.
var errNotQcow2 = errors.New("not a qcow2 image")

// readQcow2Header reads the fixed header of f. It fails with errNotQcow2
// when f does not start with the magic; it checks nothing beyond the
// version (see check).
func readQcow2Header(f *os.File) (qcow2Header, error) {
	var b [hdrV3Length]byte
	n, err := f.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return qcow2Header{}, err
	}
	if n < len(qcow2Magic) || string(b[:len(qcow2Magic)]) != qcow2Magic {
		return qcow2Header{}, errNotQcow2
	}
	be := binary.BigEndian
	h := qcow2Header{version: be.Uint32(b[hdrVersion:])}
	switch {
	case h.version == 2 && n >= hdrV2Length:
		h.refcountOrder, h.headerLength = 4, hdrV2Length
	case h.version == 3 && n >= hdrV3Length:
		h.incompatible = be.Uint64(b[hdrIncompatibleFeatures:])
		h.compatible = be.Uint64(b[hdrCompatibleFeatures:])
		h.autoclear = be.Uint64(b[hdrAutoclearFeatures:])
		h.refcountOrder = be.Uint32(b[hdrRefcountOrder:])
		h.headerLength = be.Uint32(b[hdrHeaderLength:])
	case h.version == 2 || h.version == 3:
		return qcow2Header{}, fmt.Errorf("qcow2 header truncated (%d bytes)", n)
	default:
		return qcow2Header{}, fmt.Errorf("unsupported qcow2 version %d", h.version)
	}
	h.backingFileOffset = be.Uint64(b[hdrBackingFileOffset:])
	h.backingFileSize = be.Uint32(b[hdrBackingFileSize:])
	h.clusterBits = be.Uint32(b[hdrClusterBits:])
	h.size = be.Uint64(b[hdrSize:])
	h.cryptMethod = be.Uint32(b[hdrCryptMethod:])
	h.l1Size = be.Uint32(b[hdrL1Size:])
	h.l1TableOffset = be.Uint64(b[hdrL1TableOffset:])
	h.refcountTableOffset = be.Uint64(b[hdrRefcountTableOffset:])
	h.refcountTableClusters = be.Uint32(b[hdrRefcountTableClusters:])
	h.nbSnapshots = be.Uint32(b[hdrNbSnapshots:])
	h.snapshotsOffset = be.Uint64(b[hdrSnapshotsOffset:])

	return h, nil
}

// check returns what makes h an image QEMU would refuse to open, or nil.
// Feature bits are left to the caller.
func (h qcow2Header) check() error {
	if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
		return fmt.Errorf("qcow2 cluster_bits %d out of range", h.clusterBits)
	}
	if h.version == 3 && (h.headerLength < hdrV3Length || h.headerLength%8 != 0 ||
		uint64(h.headerLength) > h.clusterSize()) {
		return fmt.Errorf("qcow2 header_length %d invalid", h.headerLength)
	}
	if h.size > 1<<62 {
		return fmt.Errorf("qcow2 virtual size %d out of range", h.size)
	}
	if unknown := h.incompatible &^ incompatKnown; unknown != 0 {
		return fmt.Errorf("qcow2 has unknown incompatible features %#x", unknown)
	}
	return nil
}

func (h qcow2Header) clusterSize() uint64 { return 1 << h.clusterBits }

// virtualSize is the size QEMU gives the guest: the header's size rounded
// down to whole 512-byte sectors, as QEMU counts it.
func (h qcow2Header) virtualSize() uint64 { return h.size &^ 511 }

// The empty delta, laid out as qemu-img create (QEMU 7.2) lays it out:
// cluster 0 the header, its extensions and the backing file name; cluster 1
// the refcount table, with one entry; cluster 2 the refcount block, with
// refcount 1 for every cluster in use; from cluster 3 the L1 table, all
// zeroes. The file ends where the L1 table ends. Only 64 KiB clusters and
// 16-bit refcounts, qemu-img's defaults, are written.
const (
	deltaClusterBits   = 16
	deltaClusterSize   = 1 << deltaClusterBits
	deltaRefcountOrder = 4
	// deltaHeaderLength covers the version 3 fields, the compression type
	// byte at 104 and padding to a multiple of 8.
	deltaHeaderLength = 112
	// bytesPerL1Entry is the guest bytes one L2 table maps.
	bytesPerL1Entry = deltaClusterSize * (deltaClusterSize / 8)
)

// featureNames is the feature name table qemu-img 7.2 writes into every
// new image, in its order: (type, bit, name), type 0 incompatible,
// 1 compatible, 2 autoclear.
var featureNames = []struct {
	kind, bit byte
	name      string
}{
	{0, 0, "dirty bit"},
	{0, 1, "corrupt bit"},
	{0, 2, "external data file"},
	{0, 3, "compression type"},
	{0, 4, "extended L2 entries"},
	{1, 0, "lazy refcounts"},
	{2, 0, "bitmaps"},
	{2, 1, "raw external data"},
}

const featureNameEntry = 48 // type, bit, 46 bytes of name

// deltaImage is an empty delta as the byte ranges to write; every byte
// not covered reads as zero.
type deltaImage struct {
	header        []byte // at 0
	refcountTable []byte // at deltaClusterSize
	refcountBlock []byte // at 2 * deltaClusterSize
	fileSize      int64
}

// encodeDelta lays out an empty qcow2 v3 delta of virtual size size whose
// backing file (format qcow2) is recorded as backing.
func encodeDelta(size uint64, backing string) (deltaImage, error) {
	if size%512 != 0 {
		return deltaImage{}, fmt.Errorf("virtual size %d is not a multiple of 512", size)
	}
	if len(backing) == 0 || len(backing) > maxBackingNameLen {
		return deltaImage{}, fmt.Errorf("backing file name is %d bytes, want 1 to %d", len(backing), maxBackingNameLen)
	}
	l1Size := (size + bytesPerL1Entry - 1) / bytesPerL1Entry
	if l1Size*8 > maxL1Bytes {
		return deltaImage{}, fmt.Errorf("virtual size %d too large for qcow2 with 64 KiB clusters", size)
	}
	l1Bytes := l1Size * 8
	l1Clusters := (l1Bytes + deltaClusterSize - 1) / deltaClusterSize
	var l1Offset uint64
	if l1Size > 0 {
		l1Offset = 3 * deltaClusterSize
	}
	usedClusters := 3 + l1Clusters

	be := binary.BigEndian
	h := make([]byte, deltaHeaderLength, 1024+len(backing))
	copy(h, qcow2Magic)
	be.PutUint32(h[hdrVersion:], 3)
	// backing_file_offset is filled in below, once the extensions are laid out.
	be.PutUint32(h[hdrBackingFileSize:], uint32(len(backing)))
	be.PutUint32(h[hdrClusterBits:], deltaClusterBits)
	be.PutUint64(h[hdrSize:], size)
	be.PutUint32(h[hdrL1Size:], uint32(l1Size))
	be.PutUint64(h[hdrL1TableOffset:], l1Offset)
	be.PutUint64(h[hdrRefcountTableOffset:], deltaClusterSize)
	be.PutUint32(h[hdrRefcountTableClusters:], 1)
	be.PutUint32(h[hdrRefcountOrder:], deltaRefcountOrder)
	be.PutUint32(h[hdrHeaderLength:], deltaHeaderLength)

	h = appendExtension(h, extBackingFormat, []byte("qcow2"))
	names := make([]byte, len(featureNames)*featureNameEntry)
	for i, fn := range featureNames {
		e := names[i*featureNameEntry:]
		e[0], e[1] = fn.kind, fn.bit
		copy(e[2:featureNameEntry], fn.name)
	}
	h = appendExtension(h, extFeatureNames, names)
	h = appendExtension(h, extEnd, nil)
	be.PutUint64(h[hdrBackingFileOffset:], uint64(len(h)))
	h = append(h, backing...)

	table := make([]byte, 8)
	be.PutUint64(table, 2*deltaClusterSize)
	block := make([]byte, 2*usedClusters)
	for i := range usedClusters {
		be.PutUint16(block[2*i:], 1)
	}
	fileSize := 3*deltaClusterSize + l1Bytes
	return deltaImage{header: h, refcountTable: table, refcountBlock: block, fileSize: int64(fileSize)}, nil
}

// appendExtension appends one header extension, padded to 8 bytes.
func appendExtension(b []byte, kind uint32, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

// writeTo writes the image into f, an empty file, leaving the zero ranges
// as holes.
func (d deltaImage) writeTo(f *os.File) error {
	for _, w := range []struct {
		off int64
		b   []byte
	}{
		{0, d.header},
		{deltaClusterSize, d.refcountTable},
		{2 * deltaClusterSize, d.refcountBlock},
	} {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			return err
		}
	}
	return f.Truncate(d.fileSize)
}

// bytes returns the whole file, holes as zeroes; tests compare it with
// what qemu-img writes.
func (d deltaImage) bytes() []byte {
	b := make([]byte, d.fileSize)
	copy(b, d.header)
	copy(b[deltaClusterSize:], d.refcountTable)
	copy(b[2*deltaClusterSize:], d.refcountBlock)
	return b
}

// unusualImage marks an image the native reader does not handle, or finds
// inconsistent. HasData then asks qemu-img, whose answer (or error) is the
// reference.
type unusualImage struct{ reason string }

func (e *unusualImage) Error() string { return "unusual qcow2: " + e.reason }

func unusual(format string, args ...any) error {
	return &unusualImage{reason: fmt.Sprintf(format, args...)}
}

// mapsAnyCluster reports whether the active L1/L2 tables of f, whose
// header is h, map any guest cluster inside the virtual size to this file:
// data, a compressed cluster, or zeroes (the zero flag, or a subcluster's
// zero bit), since all of those hide the backing file. It classifies each
// entry as QEMU does (qcow2_get_cluster_type, qcow2_get_subcluster_type);
// an entry QEMU would reject, and any image feature it does not read,
// gives an *unusualImage error.
func mapsAnyCluster(ctx context.Context, f *os.File, h qcow2Header) (bool, error) {
	if err := h.check(); err != nil {
		return false, unusual("%v", err)
	}
	switch {
	case h.cryptMethod != 0:
		return false, unusual("encrypted (method %d)", h.cryptMethod)
	case h.incompatible&incompatDataFile != 0:
		return false, unusual("external data file")
	case h.incompatible&incompatCorrupt != 0:
		return false, unusual("marked corrupt")
	}
	extended := h.incompatible&incompatExtendedL2 != 0
	entrySize := uint64(8)
	if extended {
		if h.clusterBits < 14 {
			return false, unusual("extended L2 entries with cluster_bits %d", h.clusterBits)
		}
		entrySize = 16
	}
	cs := h.clusterSize()
	size := h.virtualSize()
	clusters := (size + cs - 1) / cs
	l2Entries := cs / entrySize
	l1Needed := (clusters + l2Entries - 1) / l2Entries
	switch {
	case uint64(h.l1Size) < l1Needed:
		return false, unusual("L1 table of %d entries, %d needed", h.l1Size, l1Needed)
	case uint64(h.l1Size)*8 > maxL1Bytes:
		return false, unusual("L1 table of %d entries", h.l1Size)
	case l1Needed == 0:
		return false, nil
	case h.l1TableOffset%cs != 0:
		return false, unusual("L1 table offset %#x unaligned", h.l1TableOffset)
	}
	l1 := make([]byte, l1Needed*8)
	if err := readTable(f, l1, h.l1TableOffset); err != nil {
		return false, err
	}
	be := binary.BigEndian
	l2 := make([]byte, cs)
	// L2 tables already walked and found to map nothing, with the number
	// of entries walked. Several L1 entries may point at one table; QEMU
	// would refuse such an image on check, but reading the table once per
	// entry lets a file of a few MiB cost terabytes of reads. A repeat with
	// no more entries (and, in the last cluster, a narrower subcluster
	// mask) cannot map anything either, so the walk reads at most the file.
	clean := map[uint64]uint64{}
	for i := range l1Needed {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		l2Offset := be.Uint64(l1[8*i:]) & tableOffsetMask
		if l2Offset == 0 {
			continue // the L2 table and all its clusters are unallocated
		}
		if l2Offset%cs != 0 {
			return false, unusual("L2 table offset %#x unaligned", l2Offset)
		}
		first := i * l2Entries
		n := min(l2Entries, clusters-first)
		if walked, ok := clean[l2Offset]; ok && n <= walked {
			continue
		}
		table := l2[:n*entrySize]
		if err := readTable(f, table, l2Offset); err != nil {
			return false, err
		}
		for j := range n {
			e := table[j*entrySize:]
			var bitmap uint64
			if extended {
				bitmap = be.Uint64(e[8:])
			}
			mapped, err := h.l2EntryMapped(be.Uint64(e), bitmap, extended, h.subclusterMask(first+j))
			if err != nil || mapped {
				return mapped, err
			}
		}
		clean[l2Offset] = max(clean[l2Offset], n)
	}
	return false, nil
}

// l2EntryMapped classifies one L2 entry (and, with extended L2 entries,
// its subcluster bitmap restricted to the subclusters in mask).
func (h qcow2Header) l2EntryMapped(entry, bitmap uint64, extended bool, mask uint32) (bool, error) {
	if entry&l2Compressed != 0 {
		return true, nil
	}
	offset := entry & tableOffsetMask
	if offset%h.clusterSize() != 0 {
		return false, unusual("cluster offset %#x unaligned", offset)
	}
	if !extended {
		if entry&l2ZeroFlag != 0 {
			if h.version < 3 {
				return false, unusual("zero flag in a version 2 image")
			}
			return true, nil
		}
		return offset != 0, nil
	}
	alloc, zero := uint32(bitmap), uint32(bitmap>>32)
	switch {
	case offset != 0 && alloc&zero != 0:
		return false, unusual("subcluster both allocated and zero")
	case offset == 0 && alloc != 0:
		return false, unusual("subclusters allocated without a host cluster")
	}
	// A host cluster whose subclusters are all unallocated still reads
	// from the backing file.
	return (alloc|zero)&mask != 0, nil
}

// subclusterMask returns the subclusters of guest cluster c that lie
// inside the virtual size: all 32, except in a last, partial cluster.
func (h qcow2Header) subclusterMask(c uint64) uint32 {
	cs := h.clusterSize()
	rest := h.virtualSize() - c*cs
	if rest >= cs {
		return math.MaxUint32
	}
	sc := cs / 32
	return uint32(1)<<((rest+sc-1)/sc) - 1
}

// readTable reads a metadata table; a table that runs past the end of the
// file is unusual (QEMU would read zeroes there), not an I/O error.
func readTable(f *os.File, b []byte, off uint64) error {
	if off > math.MaxInt64-uint64(len(b)) {
		return unusual("table offset %#x out of range", off)
	}
	if _, err := f.ReadAt(b, int64(off)); err != nil {
		if errors.Is(err, io.EOF) {
			return unusual("table at %#x runs past the end of the file", off)
		}
		return err
	}
	return nil
}
