package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"stagehand/internal/api/wire"
	"stagehand/internal/client"
	"stagehand/internal/errdefs"
)

// How progress is shown on stderr: a bar redrawn in place on a terminal,
// plain lines elsewhere (a log, a CI job, a pipe), none with -o json.
type progressMode int

const (
	progressOff progressMode = iota
	progressPlain
	progressTerminal
)

const (
	// redrawEvery bounds how often the terminal line is redrawn: uploads
	// report every 32 KiB read.
	redrawEvery = 100 * time.Millisecond
	// rateWindow is the shortest interval a rate sample is taken over, and
	// rateSmoothing the time constant of the moving average over those
	// samples: the shown rate follows a change of speed within seconds
	// without jumping at each sample.
	rateWindow    = 500 * time.Millisecond
	rateSmoothing = 3 * time.Second
	// progressBarWidth is the bar's width in cells, between brackets.
	progressBarWidth = 24
)

// showAfter is how long an operation runs before its progress is shown:
// one that ends sooner shows nothing (a small upload, a job that fails at
// once), so its result or its error stays the only output. lineEvery is
// the longest gap between two plain lines; a plain line is also written at
// every tenth of the total. Variables so that a test of the whole command
// sees the display and its cadence without waiting for them.
var (
	showAfter = time.Second
	lineEvery = 10 * time.Second
)

// progress shows how far one long operation is (a job, an upload, a
// download) in bytes: done out of total (0 while unknown), the rate
// (smoothed) and the time left. update may be called from any goroutine
// (a transfer reports from the one moving the bytes).
type progress struct {
	w         io.Writer
	mode      progressMode
	label     string
	now       func() time.Time
	width     int // the terminal's columns; 0 when unknown
	showAfter time.Duration
	lineEvery time.Duration

	mu        sync.Mutex
	created   time.Time // showAfter counts from here
	started   time.Time // the first sample: the transfer or job began
	sampled   bool
	done      int64
	total     int64
	rate      float64 // bytes/s, smoothed; valid when rated
	rated     bool
	rateAt    time.Time // the last rate sample: when, and done then
	rateDone  int64
	shown     bool      // something was written
	drawnAt   time.Time // terminal: the last redraw
	drawn     bool      // terminal: a line is on screen, not ended
	lineAt    time.Time // plain: the last line
	lineTenth int64     // plain: the tenth of the total of the last line
	lines     int       // plain: lines written
	finished  bool
}

func newProgress(w io.Writer, mode progressMode, label string, now func() time.Time, width int) *progress {
	t := now()
	return &progress{w: w, mode: mode, label: label, now: now, width: width, showAfter: showAfter, lineEvery: lineEvery,
		created: t, lineTenth: -1}
}

// progress returns the progress display of this command for label: none
// with -o json, a redrawn line when stderr is a terminal, else plain lines.
func (a *app) progress(label string) *progress {
	mode, width := progressPlain, 0
	if a.output == "json" {
		mode = progressOff
	} else if w, ok := terminalWidth(a.stderr); ok {
		mode, width = progressTerminal, w
	}
	return newProgress(a.stderr, mode, printable(label), time.Now, width)
}

// terminalWidth reports whether w is a terminal, where a line redrawn with
// \r makes sense, and its width in columns (0 when unknown).
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0, true
	}
	return cols, true
}

// lockLive takes p's lock and reports true, unless p shows nothing or has
// finished: then it reports false without the lock.
func (p *progress) lockLive() bool {
	if p.mode == progressOff {
		return false
	}
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return false
	}
	return true
}

// update records that done bytes of total (0: unknown) are done, and shows
// it when it is time to.
func (p *progress) update(done, total int64) {
	if !p.lockLive() {
		return
	}
	defer p.mu.Unlock()
	now := p.now()
	p.record(now, done, total)
	if !p.shown && now.Sub(p.created) < p.showAfter {
		return
	}
	p.shown = true
	switch p.mode {
	case progressTerminal:
		if p.drawn && now.Sub(p.drawnAt) < redrawEvery {
			return
		}
		p.redraw(now, p.barLine(now, ""))
	case progressPlain:
		tenth := int64(-1)
		if p.total > 0 {
			tenth = min(p.done*10/p.total, 10)
		}
		if p.lines > 0 && tenth <= p.lineTenth && now.Sub(p.lineAt) < p.lineEvery {
			return
		}
		p.lineTenth = max(tenth, p.lineTenth)
		p.writeLine(now, p.label+": "+p.plainState(now))
	}
}

// note writes a line of its own (a message about the operation) without
// breaking the terminal's redrawn line, which comes back at the next
// update.
func (p *progress) note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
	fmt.Fprintln(p.w, msg)
}

// finish shows the end: done of total, then outcome ("" for success, else
// what happened: "canceled", "failed", "interrupted"), unless nothing was
// shown (the operation did not last showAfter). The terminal's line ends
// with a newline, so what follows starts on a line of its own.
func (p *progress) finish(done, total int64, outcome string) {
	if !p.lockLive() {
		return
	}
	defer p.mu.Unlock()
	p.finished = true
	now := p.now()
	p.record(now, done, total)
	if !p.shown {
		return
	}
	elapsed := now.Sub(p.started)
	switch p.mode {
	case progressTerminal:
		tail := "in " + shortDuration(elapsed)
		if outcome != "" {
			tail = outcome
		} else if secs := elapsed.Seconds(); secs > 0 {
			// The average, not the last rate: a transfer's end waits for
			// the daemon's answer while no byte moves.
			p.rate, p.rated = float64(p.done)/secs, true
		}
		p.redraw(now, p.barLine(now, tail))
		fmt.Fprintln(p.w)
		p.drawn = false
	case progressPlain:
		var line string
		if outcome == "" {
			line = fmt.Sprintf("%s: done, %s in %s", p.label, size(p.done), shortDuration(elapsed))
			if secs := elapsed.Seconds(); secs > 0 {
				line += fmt.Sprintf(" (%s/s)", size(int64(float64(p.done)/secs)))
			}
		} else {
			line = fmt.Sprintf("%s: %s at %s", p.label, outcome, p.amount())
		}
		p.writeLine(now, line)
	}
}

// record takes a sample: the rate is a moving average of the rates over
// successive windows of at least rateWindow, from the first sample (an
// upload's first comes once its files are hashed).
func (p *progress) record(now time.Time, done, total int64) {
	if !p.sampled {
		p.sampled, p.started, p.rateAt, p.rateDone = true, now, now, done
	}
	if done < p.rateDone {
		// Fewer bytes than before (another phase): the rate starts over.
		p.rateAt, p.rateDone, p.rated = now, done, false
	}
	p.done, p.total = done, total
	dt := now.Sub(p.rateAt)
	if dt < rateWindow {
		return
	}
	inst := float64(done-p.rateDone) / dt.Seconds()
	if !p.rated {
		p.rate, p.rated = inst, true
	} else {
		alpha := 1 - math.Exp(-dt.Seconds()/rateSmoothing.Seconds())
		p.rate += alpha * (inst - p.rate)
	}
	p.rateAt, p.rateDone = now, done
}

// redraw replaces the terminal's line with line, cut to its width so that
// it never wraps (a wrapped line cannot be redrawn in place).
func (p *progress) redraw(now time.Time, line string) {
	if p.width > 1 && utf8.RuneCountInString(line) > p.width-1 {
		line = string([]rune(line)[:p.width-1])
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.drawn, p.drawnAt = true, now
}

func (p *progress) writeLine(now time.Time, line string) {
	fmt.Fprintln(p.w, line)
	p.lineAt = now
	p.lines++
}

// barLine is the terminal's line: label, bar, percent, bytes, rate and the
// time left, or tail in its place.
func (p *progress) barLine(now time.Time, tail string) string {
	var b strings.Builder
	b.WriteString(p.label)
	if p.total > 0 {
		fill := int(min(p.done*progressBarWidth/p.total, progressBarWidth))
		head := ""
		if fill < progressBarWidth {
			head = ">"
		}
		fmt.Fprintf(&b, " [%s%s%s] %3d%% %s / %s", strings.Repeat("=", fill), head,
			strings.Repeat(" ", progressBarWidth-fill-len(head)), p.percent(), size(p.done), size(p.total))
	} else {
		fmt.Fprintf(&b, " %s", size(p.done))
	}
	if p.rated {
		fmt.Fprintf(&b, "  %s/s", size(int64(p.rate)))
	}
	if tail == "" {
		if eta, ok := p.eta(); ok {
			tail = "ETA " + shortDuration(eta)
		}
	}
	if tail != "" {
		b.WriteString("  " + tail)
	}
	return b.String()
}

// plainState is a plain line's account: "45% (450 MiB of 1.0 GiB), 85
// MiB/s, ETA 7s".
func (p *progress) plainState(now time.Time) string {
	s := p.amount()
	if p.rated {
		s += fmt.Sprintf(", %s/s", size(int64(p.rate)))
	}
	if eta, ok := p.eta(); ok {
		s += ", ETA " + shortDuration(eta)
	}
	return s
}

// amount is "45% (450 MiB of 1.0 GiB)", or the bytes alone while the total
// is unknown.
func (p *progress) amount() string {
	if p.total <= 0 {
		return size(p.done)
	}
	return fmt.Sprintf("%d%% (%s of %s)", p.percent(), size(p.done), size(p.total))
}

func (p *progress) percent() int64 {
	if p.total <= 0 {
		return 0
	}
	return min(p.done*100/p.total, 100)
}

// eta is the time left at the smoothed rate, when there is one.
func (p *progress) eta() (time.Duration, bool) {
	if p.total <= 0 || !p.rated || p.rate <= 0 || p.done >= p.total {
		return 0, false
	}
	secs := float64(p.total-p.done) / p.rate
	if secs > float64(100*24*time.Hour/time.Second) {
		return 0, false
	}
	return time.Duration(secs * float64(time.Second)), true
}

// shortDuration formats d to the second: "0s", "42s", "4m05s", "2h03m".
func shortDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	default:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
}

// uploadTemplate is client.UploadTemplate showing the bytes sent.
func (a *app) uploadTemplate(ctx context.Context, req client.TemplateUpload) (*wire.Template, error) {
	p := a.progress("upload template " + req.Name)
	req.Progress = p.update
	t, err := a.client.Templates().Upload(ctx, req)
	p.finishTransfer(err)
	return t, err
}

// uploadBundle is client.UploadBundle showing the bytes sent.
func (a *app) uploadBundle(ctx context.Context, req client.BundleUpload) (*wire.Job, error) {
	p := a.progress("upload " + req.File)
	req.Progress = p.update
	j, err := a.client.Archives().Upload(ctx, req)
	p.finishTransfer(err)
	return j, err
}

// downloadBundle is client.DownloadBundle showing the bytes received out
// of the archive's size, which the daemon announces in the archive (the
// stream itself has no length: the bundle adds a few KiB of tar headers
// and the manifest to the archive's files).
func (a *app) downloadBundle(ctx context.Context, archive, file string) (int64, error) {
	ar, err := a.client.Archives().Get(ctx, archive)
	if err != nil {
		return 0, err
	}
	p := a.progress("export " + archive)
	n, err := a.client.Archives().DownloadProgress(ctx, archive, file, func(done, total int64) {
		p.update(done, max(total, ar.Size, done))
	})
	p.finishTransfer(err)
	return n, err
}

// finishTransfer ends a transfer's display: done, or stopped where it was.
func (p *progress) finishTransfer(err error) {
	p.mu.Lock()
	done, total := p.done, p.total
	p.mu.Unlock()
	switch {
	case err == nil:
		p.finish(done, max(total, done), "")
	case errors.Is(err, context.Canceled) || errors.Is(err, errdefs.ErrCanceled):
		p.finish(done, total, "interrupted")
	default:
		p.finish(done, total, "failed")
	}
}
