package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

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
func (q *QemuImg) ImportBase(ctx context.Context, src, format, dst string) (size int64, err error) {
	if src, err = absPath(src); err != nil {
		return 0, errdefs.Invalid("import: %w", err)
	}
	if dst, err = absPath(dst); err != nil {
		return 0, err
	}
	format, err = q.checkSource(ctx, src, format)
	if err != nil {
		return 0, err
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, fmt.Errorf("import %q into %q: %w", src, dst, os.ErrExist)
	}
	args := append([]string{"convert", "-p", "-f", format, "-O", "qcow2"}, convertTuning()...)
	if err := q.convertToTemp(ctx, dst, nil, append(args, src)...); err != nil {
		return 0, fmt.Errorf("import %q into %q: %w", src, dst, err)
	}
	size, err = qcow2VirtualSize(dst)
	if err != nil {
		os.Remove(dst)
		return 0, fmt.Errorf("import %q into %q: %w", src, dst, err)
	}
	return size, nil
}

// checkSource validates src against the claimed format and returns the
// format to read it with.
func (q *QemuImg) checkSource(ctx context.Context, src, claimed string) (string, error) {
	if claimed != "" && claimed != "raw" && claimed != "qcow2" {
		return "", errdefs.Invalid("import %q: unsupported format %q (want raw or qcow2)", src, claimed)
	}
	if err := checkReadableFile(src); err != nil {
		return "", err
	}
	// No -f: let qemu-img probe, to catch a claim that does not match.
	ii, err := q.info(ctx, src)
	if err != nil {
		return "", sourceError(ctx, src, "qemu-img cannot read it", err)
	}
	detected := ii.Format
	switch {
	case claimed == "qcow2" && detected != "qcow2":
		return "", errdefs.Invalid("import %q: not a qcow2 image (qemu-img reads it as %s)", src, detected)
	case claimed == "raw" && detected != "raw":
		return "", errdefs.Invalid("import %q: given as raw but it is a %s image; "+
			"importing it as raw would expose its metadata to the guest", src, detected)
	case detected != "raw" && detected != "qcow2":
		return "", errdefs.Invalid("import %q: unsupported format %s (want raw or qcow2)", src, detected)
	}
	if detected == "qcow2" {
		if err := q.checkStandaloneQcow2(ctx, src, ii); err != nil {
			return "", err
		}
	}
	return detected, nil
}

// checkReadableFile refuses missing, unreadable, empty or special files.
func checkReadableFile(src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return errdefs.Invalid("import %q: %w", src, pathReason(err))
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return errdefs.Invalid("import %q: not a regular file or block device", src)
	}
	if fi.Mode().IsRegular() && fi.Size() == 0 {
		return errdefs.Invalid("import %q: empty file", src)
	}
	f, err := os.Open(src)
	if err != nil {
		return errdefs.Invalid("import %q: %w", src, pathReason(err))
	}
	return f.Close()
}

// checkStandaloneQcow2 refuses a qcow2 that depends on other files, needs
// a key, or is corrupt.
func (q *QemuImg) checkStandaloneQcow2(ctx context.Context, src string, ii imageInfo) error {
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
	switch err := q.Check(ctx, src); {
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
