package disk

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"runtime"
	"strconv"

	"stagehand/internal/command"
)

// convertTuning returns the options that make qemu-img convert at least as
// fast as its defaults: -m sets the number of parallel coroutines (default
// 8) to the number of CPUs, from 2 to 16. Measured on 2 cores with a warm
// page cache, -m 2 took half the time of -m 8 (and -m 16 was slower still):
// each coroutine's I/O runs on a worker thread, and extra threads only
// fight for the CPUs. More CPUs get more requests in flight for cold reads.
// -W (out-of-order writes) showed no gain and scatters the new base's
// clusters, so it is not used.
func convertTuning() []string {
	return []string{"-m", strconv.Itoa(min(max(runtime.NumCPU(), 2), 16))}
}

// Consolidate reads the whole chain under top and writes one standalone,
// sparse qcow2 at dst (no backing file). progress, when not nil, is called
// with bytes of the virtual size done so far and the total, ending with
// done == total. On error or cancellation qemu-img is killed and nothing is
// left at dst. The source layers are only read.
func (q *QemuImg) Consolidate(ctx context.Context, top, dst string, progress func(done, total int64)) error {
	return q.convertChain(ctx, "consolidate", top, dst, progress)
}

// convertChain converts the chain under top into one standalone qcow2 at
// dst through a temporary file, with progress; extra are more qemu-img
// convert options (compression, for archives).
func (q *QemuImg) convertChain(ctx context.Context, verb, top, dst string, progress func(done, total int64), extra ...string) (err error) {
	if err := absPaths(&top, &dst); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s %q into %q: %w", verb, top, dst, err)
		}
	}()
	if progress == nil {
		progress = func(int64, int64) {}
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%q: %w", dst, os.ErrExist)
	}
	total, err := qcow2VirtualSize(top)
	if err != nil {
		return err
	}
	progress(0, total)
	args := append(append([]string{"convert", "-p", "-f", "qcow2", "-O", "qcow2"}, extra...), convertTuning()...)
	if err := q.convertToTemp(ctx, dst, progressLine(total, progress), append(args, top)...); err != nil {
		return err
	}
	progress(total, total)
	return nil
}

// qcow2VirtualSize reads the virtual size from a qcow2 header. It saves
// starting a qemu-img info process, which shows on small conversions.
func qcow2VirtualSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// Header: magic "QFI\xfb" at 0, big-endian uint64 size at 24.
	var hdr [32]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[:4]) != "QFI\xfb" {
		return 0, fmt.Errorf("%q is not a qcow2 image", path)
	}
	size := binary.BigEndian.Uint64(hdr[24:32])
	if size > math.MaxInt64 {
		return 0, fmt.Errorf("%q: virtual size %d out of range", path, size)
	}
	return int64(size), nil
}

// convertToTemp runs qemu-img with args plus a temporary output name
// beside dst, then publishes it as dst; on any failure the temporary file
// is removed. onLine receives qemu-img's stdout (progress), may be nil.
func (q *QemuImg) convertToTemp(ctx context.Context, dst string, onLine func(string), args ...string) (err error) {
	tmp, err := reserveTemp(dst)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	wb := startWriteback(tmp)
	defer wb.close()
	each := func(line string) {
		wb.kick()
		if onLine != nil {
			onLine(line)
		}
	}
	if err := q.runLines(ctx, each, append(args, tmp)...); err != nil {
		return err
	}
	// A cancel that lands after qemu-img finished still means "leave
	// nothing": the caller has given up on the result.
	if err := ctx.Err(); err != nil {
		return err
	}
	return publish(tmp, dst)
}

// progressRE matches one qemu-img -p progress line: "    (42.50/100%)".
var progressRE = regexp.MustCompile(`\((\d+(?:\.\d+)?)/100%\)`)

// progressLine returns an onLine function that turns qemu-img's percentage
// into bytes of total and reports each increase.
func progressLine(total int64, progress func(done, total int64)) func(string) {
	var last int64
	return func(line string) {
		done, ok := parseProgress(line, total)
		if !ok || done <= last {
			return
		}
		last = done
		progress(done, total)
	}
}

// parseProgress converts one progress line into bytes done out of total.
func parseProgress(line string, total int64) (int64, bool) {
	m := progressRE.FindStringSubmatch(line)
	if m == nil {
		return 0, false
	}
	pct, err := strconv.ParseFloat(m[1], 64)
	if err != nil || pct < 0 {
		return 0, false
	}
	done := int64(pct / 100 * float64(total))
	return min(done, total), true
}

// ConvertReference writes top's chain into dst with a plain
// `qemu-img convert -O qcow2`, as a user would. Benchmarks compare
// Consolidate against it.
func ConvertReference(ctx context.Context, top, dst string) error {
	if _, err := New().run(ctx, "convert", "-O", "qcow2", top, dst); err != nil {
		return fmt.Errorf("convert %q into %q: %w", top, dst, err)
	}
	return nil
}

// Compare reports whether a and b have the same guest-visible content
// (qemu-img compare; an image shorter than the other must read as zeroes
// past its end).
func Compare(ctx context.Context, a, b string) (equal bool, err error) {
	_, err = New().run(ctx, "compare", "-q", a, b)
	switch {
	case err == nil:
		return true, nil
	case command.ExitCode(err) == 1:
		return false, nil
	default:
		return false, fmt.Errorf("compare %q and %q: %w", a, b, err)
	}
}
