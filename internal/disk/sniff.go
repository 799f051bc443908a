package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"unicode"
	"unicode/utf8"
)

// sniffed is what the first bytes of a file say it is.
type sniffed struct {
	// format is the QEMU format it would be read as: "qcow2", "raw", or
	// another image format ("vmdk", "vdi", ...); "" for a file that is no
	// disk image (text, an archive, a compressed file, a program).
	format string
	// what completes "it ...": "starts with text", "is a vmdk image".
	what string
}

// sniffLen covers every signature checked, the ISO 9660 one at 0x8001
// included.
const sniffLen = 0x8800

// sniffFile reads the head and the last sector of f (of size bytes) and
// tells what it is.
func sniffFile(f *os.File, size int64) (sniffed, error) {
	head := make([]byte, min(size, sniffLen))
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return sniffed{}, err
	}
	var tail []byte
	if size >= 1024 {
		tail = make([]byte, 512)
		if _, err := f.ReadAt(tail, size-512); err != nil && !errors.Is(err, io.EOF) {
			return sniffed{}, err
		}
	}
	return sniff(head, tail), nil
}

// sniff recognises disk image formats by their magic, and the files most
// often given by mistake (text, compressed files, archives, programs).
// Anything else is raw.
func sniff(head, tail []byte) sniffed {
	at := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	image := func(format string) sniffed { return sniffed{format, "is a " + format + " image"} }
	switch {
	case at(0, "QFI\xfb"):
		if len(head) >= 8 && binary.BigEndian.Uint32(head[4:8]) == 1 {
			return sniffed{"qcow", "is a qcow (version 1) image"}
		}
		return image("qcow2")
	case at(0, "QED\x00"):
		return image("qed")
	case at(0, "KDMV"), at(0, "COWD"), at(0, "# Disk DescriptorFile"):
		return image("vmdk")
	case len(head) >= 0x44 && binary.LittleEndian.Uint32(head[0x40:0x44]) == 0xbeda107f:
		return image("vdi")
	case at(0, "vhdxfile"):
		return image("vhdx")
	case at(0, "conectix"), len(tail) >= 8 && string(tail[:8]) == "conectix":
		return sniffed{"vpc", "is a vpc (VHD) image"}
	case at(0, "LUKS\xba\xbe"):
		return sniffed{"luks", "is a LUKS encrypted volume"}
	case at(0, "WithoutFreeSpace"), at(0, "WithouFreSpacExt"):
		return image("parallels")
	case at(0, "Bochs Virtual HD Image"):
		return image("bochs")
	case at(0, "\x1f\x8b"):
		return sniffed{"", "is gzip-compressed: decompress it first"}
	case at(0, "\xfd7zXZ\x00"):
		return sniffed{"", "is xz-compressed: decompress it first"}
	case at(0, "\x28\xb5\x2f\xfd"):
		return sniffed{"", "is zstd-compressed: decompress it first"}
	case at(0, "BZh"):
		return sniffed{"", "is bzip2-compressed: decompress it first"}
	case at(0, "PK\x03\x04"), at(0, "7z\xbc\xaf\x27\x1c"), at(257, "ustar"):
		return sniffed{"", "is an archive (zip, 7z or tar): extract the image first"}
	case at(0, "\x7fELF"):
		return sniffed{"", "is an ELF program, not a disk image"}
	case at(0x202, "HdrS"):
		return sniffed{"", "is a Linux kernel (give it as the kernel, not as a disk)"}
	case at(0x8001, "CD001"):
		return sniffed{"raw", "is an ISO 9660 image"}
	case at(512, "EFI PART"):
		return sniffed{"raw", "is a raw disk with a GPT partition table"}
	case at(510, "\x55\xaa"):
		return sniffed{"raw", "is a raw disk with an MBR boot sector"}
	case isText(head):
		return sniffed{"", "starts with text"}
	case len(bytes.TrimLeft(head, "\x00")) == 0:
		return sniffed{"raw", "is a raw disk that starts blank"}
	}
	return sniffed{"raw", "is a raw disk image"}
}

// isText reports whether b's first 4 KiB are UTF-8 text: printable
// characters and white space, no NUL. It must be words, not a pattern: a
// raw disk filled with one printable byte (as test images are) has no
// white space, so it is not text.
func isText(b []byte) bool {
	b = b[:min(len(b), 4096)]
	if len(b) == 0 || bytes.IndexAny(b, " \t\n") < 0 || len(bytes.Trim(b, string(b[:1]))) == 0 {
		return false
	}
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			return len(b) < utf8.UTFMax // a rune cut by the 4 KiB limit
		}
		if !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return false
		}
		b = b[n:]
	}
	return true
}
