package seed

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf16"
)

// A minimal ISO 9660 writer: one root directory of small files, a primary
// volume descriptor with ISO names (META-DATA.;1) and a Joliet supplementary
// descriptor with the exact lower-case names, as `genisoimage -J -V cidata`
// makes. Linux, FreeBSD and Windows readers use the Joliet names; readers
// that only know the primary tree see the upper-case ones (Linux lowercases
// them by default). Everything is in fixed sectors, so the layout is:
//
//	0-15   system area (zeros)
//	16     primary volume descriptor
//	17     Joliet supplementary volume descriptor
//	18     volume descriptor set terminator
//	19-22  path tables: primary L and M, Joliet L and M (one entry each)
//	23     primary root directory
//	24     Joliet root directory
//	25-    file data, each file from a sector boundary
const (
	sectorSize = 2048
	lbaPrimary = 16
	lbaJoliet  = 17
	lbaTerm    = 18
	lbaPathL   = 19
	lbaPathM   = 20
	lbaJPathL  = 21
	lbaJPathM  = 22
	lbaRoot    = 23
	lbaJRoot   = 24
	lbaData    = 25
	pathTable  = 10 // bytes of a path table holding only the root
)

// isoFile is one file of the root directory. Names are lower-case
// [a-z0-9-] without extension (the NoCloud names).
type isoFile struct {
	name string
	data []byte
}

// buildISO returns the whole image. now stamps the descriptors and the
// directory records.
func buildISO(volumeID string, files []isoFile, now time.Time) ([]byte, error) {
	files = append([]isoFile(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })

	// Place the files.
	type placed struct {
		isoFile
		lba uint32
	}
	var entries []placed
	next := uint32(lbaData)
	for _, f := range files {
		entries = append(entries, placed{f, next})
		next += uint32((len(f.data) + sectorSize - 1) / sectorSize)
	}
	total := next
	img := make([]byte, int(total)*sectorSize)
	sector := func(lba uint32) []byte { return img[lba*sectorSize : (lba+1)*sectorSize] }

	// Root directories: ".", "..", then the files (sorted: required by the
	// standard and by readers that binary-search).
	primaryRoot := dirRecord([]byte{0}, lbaRoot, sectorSize, true, now)
	jolietRoot := dirRecord([]byte{0}, lbaJRoot, sectorSize, true, now)
	var primary, joliet []byte
	primary = append(primary, primaryRoot...)
	primary = append(primary, dirRecord([]byte{1}, lbaRoot, sectorSize, true, now)...)
	joliet = append(joliet, jolietRoot...)
	joliet = append(joliet, dirRecord([]byte{1}, lbaJRoot, sectorSize, true, now)...)
	for _, e := range entries {
		size := uint32(len(e.data))
		primary = append(primary, dirRecord([]byte(strings.ToUpper(e.name)+".;1"), e.lba, size, false, now)...)
		joliet = append(joliet, dirRecord(ucs2(e.name), e.lba, size, false, now)...)
		copy(img[e.lba*sectorSize:], e.data)
	}
	if len(primary) > sectorSize || len(joliet) > sectorSize {
		return nil, fmt.Errorf("iso9660: root directory of %d files does not fit one sector", len(files))
	}
	copy(sector(lbaRoot), primary)
	copy(sector(lbaJRoot), joliet)

	// Path tables: only the root (directory number 1, its own parent).
	for _, t := range []struct {
		lba   uint32
		order binary.ByteOrder
		root  uint32
	}{
		{lbaPathL, binary.LittleEndian, lbaRoot},
		{lbaPathM, binary.BigEndian, lbaRoot},
		{lbaJPathL, binary.LittleEndian, lbaJRoot},
		{lbaJPathM, binary.BigEndian, lbaJRoot},
	} {
		s := sector(t.lba)
		s[0] = 1 // length of the directory identifier
		t.order.PutUint32(s[2:6], t.root)
		t.order.PutUint16(s[6:8], 1)
	}

	volumeDescriptor(sector(lbaPrimary), 1, volumeID, total, lbaPathL, lbaPathM, primaryRoot, now)
	volumeDescriptor(sector(lbaJoliet), 2, volumeID, total, lbaJPathL, lbaJPathM, jolietRoot, now)
	term := sector(lbaTerm)
	term[0] = 255
	copy(term[1:6], "CD001")
	term[6] = 1
	return img, nil
}

// volumeDescriptor fills a primary (typ 1) or Joliet supplementary (typ 2)
// volume descriptor (ECMA-119 8.4 and 8.5).
func volumeDescriptor(s []byte, typ byte, volumeID string, sectors, pathL, pathM uint32, root []byte, now time.Time) {
	joliet := typ == 2
	text := func(field []byte, v string) {
		if joliet {
			// UCS-2 big-endian, padded with UCS-2 spaces.
			for i := 0; i+1 < len(field); i += 2 {
				field[i], field[i+1] = 0, ' '
			}
			copy(field, ucs2(v))
			return
		}
		for i := range field {
			field[i] = ' '
		}
		copy(field, v)
	}
	s[0] = typ
	copy(s[1:6], "CD001")
	s[6] = 1
	text(s[8:40], "LINUX")    // system identifier
	text(s[40:72], volumeID)  // volume identifier: the label blkid reports
	both32(s[80:88], sectors) // volume space size
	if joliet {
		copy(s[88:91], "%/E") // escape sequence: UCS-2 level 3
	}
	both16(s[120:124], 1)          // volume set size
	both16(s[124:128], 1)          // volume sequence number
	both16(s[128:132], sectorSize) // logical block size
	both32(s[132:140], pathTable)
	binary.LittleEndian.PutUint32(s[140:144], pathL)
	binary.BigEndian.PutUint32(s[148:152], pathM)
	copy(s[156:190], root)
	text(s[190:318], "")          // volume set identifier
	text(s[318:446], "")          // publisher
	text(s[446:574], "")          // data preparer
	text(s[574:702], "STAGEHAND") // application
	text(s[702:739], "")          // copyright file
	text(s[739:776], "")          // abstract file
	text(s[776:813], "")          // bibliographic file
	decDate(s[813:830], now)      // creation
	decDate(s[830:847], now)      // modification
	decDate(s[847:864], time.Time{})
	decDate(s[864:881], time.Time{})
	s[881] = 1 // file structure version
}

// dirRecord returns one directory record (ECMA-119 9.1), padded to even length.
func dirRecord(name []byte, lba, size uint32, dir bool, t time.Time) []byte {
	n := 33 + len(name)
	if n%2 == 1 {
		n++
	}
	r := make([]byte, n)
	r[0] = byte(n)
	both32(r[2:10], lba)
	both32(r[10:18], size)
	t = t.UTC()
	r[18] = byte(t.Year() - 1900)
	r[19] = byte(t.Month())
	r[20] = byte(t.Day())
	r[21] = byte(t.Hour())
	r[22] = byte(t.Minute())
	r[23] = byte(t.Second())
	if dir {
		r[25] = 2
	}
	both16(r[28:32], 1) // volume sequence number
	r[32] = byte(len(name))
	copy(r[33:], name)
	return r
}

// decDate writes a 17-byte "dec-datetime"; the zero time is "not specified".
func decDate(b []byte, t time.Time) {
	if t.IsZero() {
		copy(b, "0000000000000000")
		b[16] = 0
		return
	}
	t = t.UTC()
	copy(b, fmt.Sprintf("%04d%02d%02d%02d%02d%02d%02d", t.Year(), t.Month(), t.Day(),
		t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e7))
	b[16] = 0 // offset from GMT in 15-minute steps
}

func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// both16 and both32 write the "both-byte orders" numbers of ECMA-119 7.2.3
// and 7.3.3: little-endian, then big-endian.
func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b[0:2], v)
	binary.BigEndian.PutUint16(b[2:4], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:4], v)
	binary.BigEndian.PutUint32(b[4:8], v)
}
