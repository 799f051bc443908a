package disk

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"

	"stagehand/internal/command"
)

// convertTuning makes qemu-img convert faster than its defaults on the
// chains Stagehand builds: -W lets the coroutines write out of order and
// -m raises them from 8 to 16, so reads of different layers overlap.
// (The output is a fresh qcow2 under a temporary name, so write order does
// not matter until it is renamed.)
var convertTuning = []string{"-W", "-m", "16"}

// Consolidate reads the whole chain under top and writes one standalone,
// sparse qcow2 at dst (no backing file). progress, when not nil, is called
// with bytes of the virtual size done so far and the total, ending with
// done == total. On error or cancellation qemu-img is killed and nothing is
// left at dst. The source layers are only read.
func (q *QemuImg) Consolidate(ctx context.Context, top, dst string, progress func(done, total int64)) (err error) {
	if top, err = absPath(top); err != nil {
		return err
	}
	if dst, err = absPath(dst); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("consolidate %q into %q: %w", top, dst, err)
		}
	}()
	if progress == nil {
		progress = func(int64, int64) {}
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%q: %w", dst, os.ErrExist)
	}
	ii, err := q.info(ctx, top, "-f", "qcow2")
	if err != nil {
		return err
	}
	total := ii.VirtualSize
	progress(0, total)
	args := append([]string{"convert", "-p", "-f", "qcow2", "-O", "qcow2"}, convertTuning...)
	err = q.convertToTemp(ctx, dst, progressLine(total, progress), append(args, top)...)
	if err != nil {
		return err
	}
	progress(total, total)
	return nil
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
	if onLine == nil {
		onLine = func(string) {}
	}
	if err := q.runLines(ctx, onLine, append(args, tmp)...); err != nil {
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
