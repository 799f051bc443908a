package disk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"stagehand/internal/command"
	"stagehand/internal/errdefs"
)

// ImportBase checks that src really is an image of format ("raw", "qcow2",
// or "" to detect) and writes it to dst as a standalone qcow2 base,
// returning its virtual size. Every problem with src is an
// errdefs.ErrInvalid naming it. On failure nothing is left at dst.
//
// The checks matter for safety, not only for tidiness: a qcow2 imported as
// raw would hand its header, and any backing file path in it, to the guest
// as disk content, and a qcow2 with a backing file or an external data file
// would make the template read files outside the data directory.
//
// src is opened once (OpenSource: a regular file, no symlink, no FIFO)
// and copied into a private file beside dst (ImportCopyPath(dst)); every
// check and the conversion read that copy, which nobody else can change.
// Checking the user's path and then converting it again would let a swap
// in between (a re-pointed symlink, a rewritten header) slip a backing
// file past the checks.
func (q *QemuImg) ImportBase(ctx context.Context, src, format, dst string) (size int64, err error) {
	if src, err = absPath(src); err != nil {
		return 0, errdefs.Invalid("import: %w", err)
	}
	f, _, err := OpenSource(src)
	if err != nil {
		return 0, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	return q.ImportFile(ctx, f, src, false, format, dst)
}

// ImportFile is ImportBase of a source already open: f, from OpenSource
// (a regular file, opened once), named name in messages and in the format
// hint of a name ending in .qcow2. When private is true, f is a file only
// the daemon can change (an upload it received into its data directory,
// whose path f.Name() is): it is checked and converted where it is.
// Otherwise its bytes are first copied into a private file beside dst
// (ImportCopyPath(dst)), and every check and the conversion read that copy.
// f is not closed.
func (q *QemuImg) ImportFile(ctx context.Context, f *os.File, name string, private bool, format, dst string) (size int64, err error) {
	src := name
	if dst, err = absPath(dst); err != nil {
		return 0, err
	}
	if format != "" && format != "raw" && format != "qcow2" {
		return 0, errdefs.Invalid("import %q: unsupported format %q (want raw or qcow2)", src, format)
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("import %q: %w", src, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, errdefs.Invalid("import %q: not a regular file", src)
	}
	// A first look at the source itself refuses the wrong file before
	// anything is copied; the decision that counts is made on the copy.
	if _, err := sniffSource(src, format, f, fi.Size()); err != nil {
		return 0, err
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, fmt.Errorf("import %q into %q: %w", src, dst, os.ErrExist)
	}
	// The copy, then the converted base: about twice what src holds.
	need := 2 * Allocated(fi)
	if private {
		need = Allocated(fi)
	}
	if err := CheckSpace(filepath.Dir(dst), need); err != nil {
		return 0, fmt.Errorf("import %q: %w", src, err)
	}
	cp := f.Name()
	if !private {
		cp = ImportCopyPath(dst)
		if err := CopySource(ctx, f, fi.Size(), cp, 0o600, false); err != nil {
			return 0, fmt.Errorf("import %q: %w", src, err)
		}
		defer os.Remove(cp)
	}
	format, err = q.checkCopy(ctx, src, format, cp, fi.Size())
	if err != nil {
		return 0, err
	}
	args := append([]string{"convert", "-p", "-f", format, "-O", "qcow2"}, convertTuning()...)
	if err := q.convertToTemp(ctx, dst, nil, append(args, cp)...); err != nil {
		return 0, fmt.Errorf("import %q into %q: %w", src, dst, err)
	}
	size, err = qcow2VirtualSize(dst)
	if err != nil {
		os.Remove(dst)
		return 0, fmt.Errorf("import %q into %q: %w", src, dst, err)
	}
	return size, nil
}

// ImportCopyPath is where ImportBase keeps its private copy of the source
// while it checks and converts it: beside dst, a dot name ending in .tmp,
// so the caller can journal it before the copy exists and recovery can
// tell it from a layer.
func ImportCopyPath(dst string) string {
	return filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".src.tmp")
}

// sniffSource decides the format of src (f, of size bytes) from its bytes
// and the claimed format (see decideFormat).
func sniffSource(src, claimed string, f *os.File, size int64) (string, error) {
	if size == 0 {
		return "", errdefs.Invalid("import %q: empty file", src)
	}
	s, err := sniffFile(f, size)
	if err != nil {
		return "", fmt.Errorf("import %q: %w", src, err)
	}
	return decideFormat(src, claimed, s, size)
}

// decideFormat turns what the bytes say (s) and what the user claimed
// into the format to convert from. A name ending in .qcow2 claims qcow2
// unless a format is given. The claim must match the bytes, except that an
// explicit raw may take a file that is no known image (text, say), never
// an image format: its metadata would become guest data. A raw image must
// be whole 512-byte sectors.
func decideFormat(src, claimed string, s sniffed, size int64) (string, error) {
	byName := claimed == "" && strings.EqualFold(filepath.Ext(src), ".qcow2")
	want := claimed
	if byName {
		want = "qcow2"
	}
	var format string
	switch {
	case want == "qcow2" && s.format != "qcow2":
		hint := ""
		if byName && s.format == "raw" {
			hint = " (if it is a raw disk image, import it with --format raw)"
		}
		return "", errdefs.Invalid("import: %q is not a qcow2 image: it %s%s", src, s.what, hint)
	case s.format == "qcow2" || s.format == "raw":
		if claimed == "raw" && s.format != "raw" {
			return "", givenAsRaw(src, s.format)
		}
		format = s.format
	case s.format != "":
		if claimed == "raw" {
			return "", givenAsRaw(src, s.format)
		}
		return "", errdefs.Invalid("import %q: unsupported format %s (want raw or qcow2): it %s; "+
			"convert it first (qemu-img convert -O qcow2)", src, s.format, s.what)
	case claimed == "raw":
		format = "raw" // the user says so: the bytes have no format to contradict it
	default:
		return "", errdefs.Invalid("import: %q is not a disk image: it %s "+
			"(if it really is a raw disk image, import it with --format raw)", src, s.what)
	}
	if format == "raw" {
		switch {
		case size < 512:
			return "", errdefs.Invalid("import: %q is not a raw disk image: it is %d bytes, less than one 512-byte sector", src, size)
		case size%512 != 0:
			return "", errdefs.Invalid("import: %q is not a raw disk image: its size, %d bytes, is not a whole number of 512-byte sectors", src, size)
		}
	}
	return format, nil
}

func givenAsRaw(src, format string) error {
	return errdefs.Invalid("import %q: given as raw but it is a %s image; "+
		"importing it as raw would expose its metadata to the guest", src, format)
}

// checkCopy decides the format of the private copy cp of src (what was
// read, not what src holds now), has qemu-img agree with it, and checks a
// qcow2 depends on no other file. Messages name src.
func (q *QemuImg) checkCopy(ctx context.Context, src, claimed, cp string, size int64) (string, error) {
	f, err := os.Open(cp)
	if err != nil {
		return "", err
	}
	format, err := sniffSource(src, claimed, f, size)
	f.Close()
	if err != nil {
		return "", err
	}
	// No -f: let qemu-img probe too, to catch a format sniff does not
	// know. info does not open backing files.
	ii, err := q.info(ctx, cp)
	if err != nil {
		return "", sourceError(ctx, src, "qemu-img cannot read it", err)
	}
	switch {
	case ii.Format == format:
	case format == "qcow2":
		return "", errdefs.Invalid("import %q: not a qcow2 image (qemu-img reads it as %s)", src, ii.Format)
	case claimed == "raw":
		return "", givenAsRaw(src, ii.Format)
	default:
		return "", errdefs.Invalid("import %q: unsupported format %s (want raw or qcow2)", src, ii.Format)
	}
	if format == "qcow2" {
		if err := q.checkStandalone(ctx, src, cp, ii); err != nil {
			return "", err
		}
		if err := q.checkExpansion(ctx, src, cp); err != nil {
			return "", err
		}
	}
	return format, nil
}

// checkExpansion refuses a qcow2 whose conversion would not fit: a
// compressed image can expand hundreds of times.
func (q *QemuImg) checkExpansion(ctx context.Context, src, cp string) error {
	out, err := q.run(ctx, "measure", "--output=json", "-f", "qcow2", "-O", "qcow2", cp)
	if err != nil {
		return sourceError(ctx, src, "qemu-img cannot measure it", err)
	}
	var m struct {
		Required int64 `json:"required"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		return fmt.Errorf("import %q: decode qemu-img measure: %w", src, err)
	}
	if err := CheckSpace(filepath.Dir(cp), m.Required); err != nil {
		return fmt.Errorf("import %q: %w", src, err)
	}
	return nil
}

// checkStandaloneQcow2 refuses a qcow2 that depends on other files, needs
// a key, or is corrupt.
func (q *QemuImg) checkStandaloneQcow2(ctx context.Context, src string, ii imageInfo) error {
	return q.checkStandalone(ctx, src, src, ii)
}

// checkStandalone is checkStandaloneQcow2 of the file at path, reported
// as src.
func (q *QemuImg) checkStandalone(ctx context.Context, src, path string, ii imageInfo) error {
	switch {
	case ii.BackingFilename != "":
		return errdefs.Invalid("import %q: it has a backing file %q; import a standalone image "+
			"(qemu-img convert -O qcow2 it first)", src, ii.BackingFilename)
	case ii.FormatSpecific.Data.DataFile != "":
		return errdefs.Invalid("import %q: it has an external data file %q", src, ii.FormatSpecific.Data.DataFile)
	case ii.Encrypted:
		return errdefs.Invalid("import %q: encrypted images are not supported", src)
	case ii.FormatSpecific.Data.Corrupt:
		return errdefs.Invalid("import %q: qcow2 marked corrupt", src)
	}
	// Corrupt metadata could be copied silently; leaked clusters are
	// harmless here because convert writes a fresh file.
	switch err := q.Check(ctx, path); {
	case err == nil, errors.Is(err, ErrLeaks):
		return nil
	case errors.Is(err, ErrCorrupt):
		return errdefs.Invalid("import %q: %w", src, err)
	default:
		return sourceError(ctx, src, "qemu-img cannot check it", err)
	}
}

// sourceError makes err, a failure to read the user's file, an
// ErrInvalid, unless it is ours: a cancelled context or a missing qemu-img.
func sourceError(ctx context.Context, src, what string, err error) error {
	var cmdErr *command.Error
	if ctx.Err() != nil || !errors.As(err, &cmdErr) {
		return fmt.Errorf("import %q: %w", src, err)
	}
	return errdefs.Invalid("import %q: %s: %w", src, what, err)
}

// pathReason drops the path from an *fs.PathError, since our message
// already names the file.
func pathReason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
