package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock               { return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }
func testProgress(mode progressMode, width int) (*progress, *bytes.Buffer, *fakeClock) {
	var out bytes.Buffer
	clk := newFakeClock()
	p := newProgress(&out, mode, "full-clone copy", clk.now, width)
	p.showAfter, p.lineEvery = 0, 10*time.Second
	return p, &out, clk
}

const mib = 1 << 20

// TestProgressTerminal: on a terminal the line is redrawn in place (each
// draw starts with \r and erases the rest of the line), at most every
// redrawEvery, shows bar, percent, bytes, the smoothed rate and the time
// left, and the display ends with a newline after the final state.
func TestProgressTerminal(t *testing.T) {
	p, out, clk := testProgress(progressTerminal, 0)
	p.update(0, 100*mib)
	for i := 1; i <= 50; i++ { // 10 MiB/s, a sample every 50 ms
		clk.advance(50 * time.Millisecond)
		p.update(int64(i)*mib-mib/2, 100*mib) // within redrawEvery: no redraw
		clk.advance(50 * time.Millisecond)
		p.update(int64(i)*mib, 100*mib)
	}
	s := out.String()
	if strings.Contains(s, "\n") {
		t.Fatalf("a newline before the end:\n%q", s)
	}
	draws := strings.Split(s, "\r")[1:]
	if strings.Index(s, "\r") != 0 || len(draws) != 51 {
		t.Fatalf("%d redraws (want 51, one per 100 ms), output %q", len(draws), s)
	}
	for _, d := range draws {
		if !strings.HasSuffix(d, "\x1b[K") {
			t.Errorf("redraw %q does not erase the rest of the line", d)
		}
	}
	last := strings.TrimSuffix(draws[len(draws)-1], "\x1b[K")
	want := "full-clone copy [============>           ]  50% 50 MiB / 100 MiB  10 MiB/s  ETA 5s"
	if last != want {
		t.Errorf("line at 50%%:\n got %q\nwant %q", last, want)
	}
	out.Reset()
	clk.advance(5 * time.Second)
	p.finish(100*mib, 100*mib, "")
	s = out.String()
	if !strings.HasPrefix(s, "\r") || !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Fatalf("finish wrote %q: want one redraw ending with a newline", s)
	}
	if !strings.Contains(s, "[========================] 100% 100 MiB / 100 MiB  10 MiB/s  in 10s") {
		t.Errorf("final line %q", s)
	}
	out.Reset()
	p.update(1, 1)
	p.finish(1, 1, "")
	if out.Len() != 0 {
		t.Errorf("written after finish: %q", out.String())
	}
}

// TestProgressTerminalFitsWidthAndNotes: a redrawn line never reaches the
// terminal's last column (a wrapped line cannot be redrawn), a note ends
// the line before it is written, an unknown total shows bytes and rate,
// and a failure is said at the end.
func TestProgressTerminalFitsWidthAndNotes(t *testing.T) {
	narrow, out, _ := testProgress(progressTerminal, 20)
	narrow.update(mib, 100*mib)
	if s := out.String(); s != "\rfull-clone copy [> \x1b[K" {
		t.Errorf("on 20 columns: %q, want the line cut to 19", s)
	}
	p, out, clk := testProgress(progressTerminal, 44)
	p.update(0, 0)
	clk.advance(time.Second)
	p.update(3*mib, 0)
	p.note("stagehand: canceling job 1")
	clk.advance(time.Second)
	p.update(4*mib, 0)
	p.finish(4*mib, 0, "canceled")
	s := out.String()
	for _, d := range strings.Split(strings.ReplaceAll(s, "\n", "\r"), "\r") {
		d = strings.TrimSuffix(d, "\x1b[K")
		if n := utf8.RuneCountInString(d); n > 43 {
			t.Errorf("line of %d columns on a 44-column terminal: %q", n, d)
		}
	}
	if !strings.Contains(s, "full-clone copy 3 MiB  3 MiB/s\x1b[K\r\x1b[Kstagehand: canceling job 1\n\r") {
		t.Errorf("the note does not clear the line first, or the unknown total is not bytes and rate: %q", s)
	}
	if !strings.HasSuffix(s, "canceled\x1b[K\n") {
		t.Errorf("end %q", s)
	}
}

// TestProgressPlain: not on a terminal, whole lines only (never \r nor an
// escape), one at the start, one at each tenth of the total and one every
// lineEvery when the tenths come slowly, and a last one saying how it
// ended.
func TestProgressPlain(t *testing.T) {
	p, out, clk := testProgress(progressPlain, 0)
	var at []time.Duration // when each line was written, from the start
	start := clk.t
	lines := 0
	sample := func(done, total int64) {
		p.update(done, total)
		if n := strings.Count(out.String(), "\n"); n > lines {
			lines = n
			at = append(at, clk.t.Sub(start))
		}
	}
	// 0 to 30 %: 1 % a second, so a line at each tenth (every 10 s).
	// 30 to 40 %: 0.25 % a second, 40 s, so lines every 10 s between.
	for s := 0; s <= 30; s++ {
		sample(int64(s)*mib, 100*mib)
		clk.advance(time.Second)
	}
	for s := 1; s <= 40; s++ {
		sample(30*mib+int64(s)*mib/4, 100*mib)
		clk.advance(time.Second)
	}
	s := out.String()
	if strings.ContainsAny(s, "\r\x1b") {
		t.Fatalf("control characters in plain output: %q", s)
	}
	sec := time.Second
	want := []time.Duration{0, 10 * sec, 20 * sec, 30 * sec, 40 * sec, 50 * sec, 60 * sec, 70 * sec}
	if fmt.Sprint(at) != fmt.Sprint(want) {
		t.Errorf("lines at %v, want %v:\n%s", at, want, s)
	}
	got := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if got[0] != "full-clone copy: 0% (0 B of 100 MiB)" {
		t.Errorf("first line %q", got[0])
	}
	if got[2] != "full-clone copy: 20% (20 MiB of 100 MiB), 1 MiB/s, ETA 1m20s" {
		t.Errorf("third line %q", got[2])
	}
	out.Reset()
	p.finish(100*mib, 100*mib, "")
	if s := out.String(); s != "full-clone copy: done, 100 MiB in 1m11s (1.4 MiB/s)\n" {
		t.Errorf("last line %q", s)
	}

	p, out, clk = testProgress(progressPlain, 0)
	p.update(0, 100*mib)
	clk.advance(2 * time.Second)
	p.update(45*mib, 100*mib)
	p.finish(45*mib, 100*mib, "canceled")
	if s := out.String(); !strings.HasSuffix(s, "\nfull-clone copy: canceled at 45% (45 MiB of 100 MiB)\n") || strings.Contains(s, "\r") {
		t.Errorf("canceled: %q", s)
	}
}

// TestProgressShowsOnlyWhatLasts: nothing is written before the operation
// has run showAfter, nor at the end of one that ended sooner; then the
// first line shows where it is.
func TestProgressShowsOnlyWhatLasts(t *testing.T) {
	for _, mode := range []progressMode{progressPlain, progressTerminal} {
		p, out, clk := testProgress(mode, 0)
		p.showAfter = time.Second
		p.update(0, 10*mib)
		clk.advance(900 * time.Millisecond)
		p.update(9*mib, 10*mib)
		p.finish(10*mib, 10*mib, "failed")
		if out.Len() != 0 {
			t.Errorf("mode %d: an operation of 0.9 s wrote %q", mode, out.String())
		}

		p, out, clk = testProgress(mode, 0)
		p.showAfter = time.Second
		p.update(0, 10*mib)
		clk.advance(900 * time.Millisecond)
		p.update(1*mib, 10*mib)
		if out.Len() != 0 {
			t.Errorf("mode %d: written before showAfter: %q", mode, out.String())
		}
		clk.advance(100 * time.Millisecond)
		p.update(2*mib, 10*mib)
		if s := out.String(); !strings.Contains(s, "20%") || !strings.Contains(s, "2 MiB") {
			t.Errorf("mode %d: first line at showAfter %q, want 20%% (2 MiB ...)", mode, s)
		}
	}
}

// TestProgressRateFromFirstSample: the rate and the time taken count from
// the first sample (an upload's, once its files are hashed), and at the
// end the average is shown, not the last rate (the daemon's answer may
// come seconds after the last byte).
func TestProgressRateFromFirstSample(t *testing.T) {
	p, out, clk := testProgress(progressTerminal, 0)
	clk.advance(5 * time.Second) // hashing: no sample
	p.update(0, 40*mib)
	clk.advance(time.Second)
	p.update(20*mib, 40*mib)
	if s := out.String(); !strings.HasSuffix(s, "50% 20 MiB / 40 MiB  20 MiB/s  ETA 1s\x1b[K") {
		t.Errorf("after 1 s of transfer: %q", s)
	}
	clk.advance(time.Second)
	p.update(40*mib, 40*mib)
	clk.advance(2 * time.Second) // the daemon's answer
	out.Reset()
	p.finish(40*mib, 40*mib, "")
	if s := out.String(); !strings.HasSuffix(s, "100% 40 MiB / 40 MiB  10 MiB/s  in 4s\x1b[K\n") {
		t.Errorf("end: %q", s)
	}
}

// TestProgressOff: -o json shows nothing.
func TestProgressOff(t *testing.T) {
	p, out, clk := testProgress(progressOff, 0)
	p.update(0, 10)
	clk.advance(time.Minute)
	p.update(5, 10)
	p.finish(10, 10, "")
	if out.Len() != 0 {
		t.Errorf("progress off wrote %q", out.String())
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 1499 * time.Millisecond: "1s", 42 * time.Second: "42s", 245 * time.Second: "4m05s", 2*time.Hour + 3*time.Minute + 20*time.Second: "2h03m",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
