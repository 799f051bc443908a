package lab

import (
	"context"
	"os"

	"stagehand/internal/disk"
	"stagehand/internal/lab/deploy"
)

// DiskTool is what the lab needs from qcow2 files. Every path is absolute.
// internal/disk.QemuImg is the real implementation.
type DiskTool interface {
	// ImportFile checks that f, a source opened once (named name in
	// messages), really is an image of format ("raw", "qcow2", or "" to
	// detect; a qcow2 with a backing file is refused) and writes a
	// standalone qcow2 base at dst. private says only the daemon can change
	// f (an upload), so it need not be copied first. It returns the
	// virtual size. On failure nothing is left at dst.
	ImportFile(ctx context.Context, f *os.File, name string, private bool, format, dst string) (int64, error)
	// CreateDelta writes an empty qcow2 at dst whose backing file is parent
	// (recorded relative to dst's directory when both share it).
	CreateDelta(ctx context.Context, parent, dst string) error
	// SetReadOnly makes the file read-only (0400) or writable (0600).
	SetReadOnly(path string, readOnly bool) error
	// HasData reports whether the layer itself (not its backing chain) holds
	// any written cluster, zeroes included.
	HasData(ctx context.Context, path string) (bool, error)
	// Consolidate reads the whole chain under top and writes one standalone,
	// sparse qcow2 at dst, reporting progress in bytes. On error or
	// cancellation dst is removed. Like ImportFile, it writes under
	// disk.TempPath(dst) until the file is complete: the journal names that
	// file (beginOp), so recovery removes it after a crash.
	Consolidate(ctx context.Context, top, dst string, progress func(done, total int64)) error
	// Info describes one layer file as qemu-img sees it.
	Info(ctx context.Context, path string) (disk.Info, error)
	// Chain returns the absolute paths of the backing chain, top first.
	Chain(ctx context.Context, path string) ([]string, error)
	// Check runs a consistency check of one layer file.
	Check(ctx context.Context, path string) error
	// ArchiveDelta, ExpandDelta and CheckDelta carry snapshot layers in
	// archives as deltas on one another (see disk.QemuImg): written
	// compressed, backed by a sibling archive file by its base name;
	// expanded onto a new parent layer; checked when from elsewhere.
	ArchiveDelta(ctx context.Context, top, parent, dst, backing string) error
	ExpandDelta(ctx context.Context, src, parent, dst string, progress func(done, total int64)) error
	CheckDelta(ctx context.Context, path, backing string) error
}

// The runtime seams of deployments live in internal/lab/deploy; these
// names keep the lab's Options and labtest's fakes as they were.
type (
	Hypervisor = deploy.Hypervisor
	VM         = deploy.VM
	Segments   = deploy.Segments
	Fences     = deploy.Fences
	QEMU       = deploy.QEMU
)
