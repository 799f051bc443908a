// Package console is the per-VM serial console hub: the daemon's one
// connection to a VM's serial console socket (QEMU serves one client at a
// time), shared by any number of viewers. It keeps the last output in a
// ring buffer replayed to each viewer that attaches, fans output out
// without letting a slow viewer stall the others, and lets one viewer at a
// time hold the keyboard.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"stagehand/internal/errdefs"
)

// RingSize is how much of the latest output a hub keeps for the viewers
// that attach later: a screenful of a busy console, many of a quiet one.
const RingSize = 64 << 10

// DefaultQueueBytes bounds the output waiting for one viewer. A viewer
// that falls further behind is dropped (ErrTooSlow) rather than holding
// the others back or the daemon's memory. A serial port under TCG prints
// about 50 KB/s, so this is seconds of output: a viewer that far behind
// is gone or stuck, and reconnecting replays the screen anyway.
const DefaultQueueBytes = 256 << 10

// inputTimeout bounds one write to the console socket: a guest that reads
// nothing from its serial port (stopped CPUs, no driver) fills the socket,
// and the typist is told instead of hanging.
const inputTimeout = 10 * time.Second

// readChunk is the most one read of the console socket takes.
const readChunk = 32 << 10

// Why a viewer ends. Test them with errors.Is.
var (
	// ErrConsoleClosed: the hub's connection to the VM's console ended,
	// which happens when the VM stops (or the daemon closed the hub).
	ErrConsoleClosed = errors.New("the VM's console closed (the VM stopped)")
	// ErrTooSlow: the viewer did not take its output fast enough; the
	// others went on without it.
	ErrTooSlow = errors.New("this viewer fell behind the console's output and was dropped")
	// ErrViewerClosed: the viewer was closed by its own side.
	ErrViewerClosed = errors.New("viewer closed")
)

// ErrNotHolder refuses input from a viewer that does not hold the
// keyboard: it watches until it takes it (Viewer.Take).
var ErrNotHolder = errdefs.Conflict("another viewer holds the console's keyboard; take it first")

// Status is what a viewer is told about the console it watches.
type Status struct {
	Holder  string // the name of the viewer holding the keyboard; "" when nobody does
	Viewers int    // viewers attached, this one included
	YouHold bool   // whether this viewer holds the keyboard
}

// Options tune a hub; the zero value is the daemon's.
type Options struct {
	// QueueBytes bounds each viewer's pending output (0: DefaultQueueBytes).
	QueueBytes int
	Log        *slog.Logger
}

// Hub is one VM's console shared by its viewers. Safe for concurrent use.
type Hub struct {
	conn       net.Conn
	log        *slog.Logger
	queueBytes int

	writeMu sync.Mutex // one viewer's input at a time on the socket

	mu      sync.Mutex
	ring    ring
	viewers map[*Viewer]struct{}
	holder  *Viewer
	ended   error // set once the connection ended
	done    chan struct{}
}

// Open connects to the VM's console socket and starts a hub on it. The
// ring starts with the tail of serialLog ("" or a missing file: empty),
// the file QEMU writes every byte of the console to, so that a viewer who
// attaches first still sees what the guest printed before. ctx bounds the
// connection only.
func Open(ctx context.Context, socket, serialLog string, opts Options) (*Hub, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	// The log's size before connecting: what QEMU writes from then on also
	// comes through the socket, so reading the log up to there replays
	// nothing twice.
	var seed []byte
	var seedErr error
	if serialLog != "" {
		seed, seedErr = tail(serialLog, RingSize)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, errdefs.Unavailable("console socket %s: %w", socket, err)
	}
	if seedErr != nil && !errors.Is(seedErr, os.ErrNotExist) {
		log.Warn("console: cannot replay the serial log", "log", serialLog, "err", seedErr)
	}
	h := &Hub{
		conn: conn, log: log, queueBytes: opts.QueueBytes,
		viewers: map[*Viewer]struct{}{}, done: make(chan struct{}),
	}
	if h.queueBytes <= 0 {
		h.queueBytes = DefaultQueueBytes
	}
	h.ring.write(seed)
	if len(seed) >= RingSize {
		h.ring.wrapped = true // the log held more: the seed starts mid-line
	}
	go h.readLoop()
	return h, nil
}

// tail returns the last n bytes of the file at path.
func tail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// readLoop takes the console's output into the ring and every viewer's
// queue until the connection ends, then ends every viewer.
func (h *Hub) readLoop() {
	buf := make([]byte, readChunk)
	for {
		n, err := h.conn.Read(buf)
		if n > 0 {
			h.broadcast(buf[:n])
		}
		if err != nil {
			h.end(err)
			return
		}
	}
}

func (h *Hub) broadcast(p []byte) {
	chunk := append([]byte(nil), p...)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring.write(chunk)
	var dropped []*Viewer
	for v := range h.viewers {
		if v.pendingBytes+len(chunk) > h.queueBytes {
			dropped = append(dropped, v)
			continue
		}
		v.pending = append(v.pending, chunk)
		v.pendingBytes += len(chunk)
		v.wake()
	}
	for _, v := range dropped {
		h.log.Info("console viewer fell behind; dropping it", "viewer", v.name, "pending", v.pendingBytes)
		h.detachLocked(v, ErrTooSlow)
	}
}

func (h *Hub) end(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended != nil {
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		h.ended = ErrConsoleClosed
	} else {
		h.ended = fmt.Errorf("%w: %w", ErrConsoleClosed, err)
	}
	for v := range h.viewers {
		v.endLocked(h.ended)
	}
	h.viewers = map[*Viewer]struct{}{}
	h.holder = nil
	h.conn.Close()
	close(h.done)
}

// Done is closed once the hub has ended: its connection to the console
// closed (the VM stopped) or Close was called.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Close ends the hub and every viewer with ErrConsoleClosed.
func (h *Hub) Close() error {
	h.conn.Close()
	<-h.done
	return nil
}

// AttachOptions say how a viewer attaches.
type AttachOptions struct {
	// Take takes the keyboard from whoever holds it; without it the
	// viewer holds the keyboard only when nobody else does.
	Take bool
	// NoReplay starts the viewer's output at what the console prints next,
	// instead of with the ring's content (the screen as it is).
	NoReplay bool
}

// Attach adds a viewer named name (shown to the others as the keyboard's
// holder). Its first output is the ring's content, so it sees the screen
// as it is. An ended hub refuses with ErrConsoleClosed (errdefs
// Unavailable).
func (h *Hub) Attach(name string, opts AttachOptions) (*Viewer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended != nil {
		return nil, errdefs.Unavailable("attach to the console: %w", h.ended)
	}
	v := &Viewer{hub: h, name: name, wakeCh: make(chan struct{}, 1), statusDirty: true}
	if replay := h.ring.replay(); len(replay) > 0 && !opts.NoReplay {
		v.pending = [][]byte{replay}
		v.pendingBytes = len(replay)
	}
	h.viewers[v] = struct{}{}
	if opts.Take || h.holder == nil {
		h.holder = v
	}
	h.statusChangedLocked()
	return v, nil
}

// Viewers counts the attached viewers.
func (h *Hub) Viewers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.viewers)
}

// statusChangedLocked tells every viewer its status changed.
func (h *Hub) statusChangedLocked() {
	for v := range h.viewers {
		v.statusDirty = true
		v.wake()
	}
}

// detachLocked removes v with reason. The keyboard it held is free: the
// next viewer to type or take it holds it.
func (h *Hub) detachLocked(v *Viewer, reason error) {
	if _, ok := h.viewers[v]; !ok {
		return
	}
	delete(h.viewers, v)
	if h.holder == v {
		h.holder = nil
	}
	v.endLocked(reason)
	h.statusChangedLocked()
}

// input writes p to the console for v, when v holds the keyboard or
// nobody does (then v takes it: the first to type after a holder left).
func (h *Hub) input(v *Viewer, p []byte) error {
	h.mu.Lock()
	if h.holder == nil && h.ended == nil && v.err == nil {
		h.holder = v
		h.statusChangedLocked()
	}
	holds, ended := h.holder == v, h.ended
	h.mu.Unlock()
	switch {
	case ended != nil:
		return ended
	case !holds:
		return ErrNotHolder
	}
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	_ = h.conn.SetWriteDeadline(time.Now().Add(inputTimeout))
	if _, err := h.conn.Write(p); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errdefs.Unavailable("the guest reads nothing from its serial port (input waited %s)", inputTimeout)
		}
		return fmt.Errorf("console input: %w", err)
	}
	return nil
}

// Viewer is one attached viewer: it reads what the console printed since
// it attached (the ring first), its status, and types when it holds the
// keyboard. Its methods are safe for concurrent use.
type Viewer struct {
	hub    *Hub
	name   string
	wakeCh chan struct{}

	// Under hub.mu:
	pending      [][]byte
	pendingBytes int
	statusDirty  bool
	err          error // why it ended; nil while attached
}

func (v *Viewer) wake() {
	select {
	case v.wakeCh <- struct{}{}:
	default:
	}
}

func (v *Viewer) endLocked(reason error) {
	if v.err == nil {
		v.err = reason
	}
	v.wake()
}

// Name is the viewer's name as the others see it.
func (v *Viewer) Name() string { return v.name }

// Wake receives a value when output is pending, the status changed or the
// viewer ended: then call Next.
func (v *Viewer) Wake() <-chan struct{} { return v.wakeCh }

// Next takes the pending output (nil when none) and the status when it
// changed since the last call (nil otherwise). err is set once the viewer
// has ended and its output is all taken: ErrConsoleClosed, ErrTooSlow or
// ErrViewerClosed. A viewer dropped as too slow gets no more output.
func (v *Viewer) Next() (out []byte, st *Status, err error) {
	h := v.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if errors.Is(v.err, ErrTooSlow) {
		v.pending, v.pendingBytes = nil, 0
	}
	switch len(v.pending) {
	case 0:
	case 1:
		out = v.pending[0]
	default:
		out = make([]byte, 0, v.pendingBytes)
		for _, c := range v.pending {
			out = append(out, c...)
		}
	}
	v.pending, v.pendingBytes = nil, 0
	if v.statusDirty && v.err == nil {
		v.statusDirty = false
		s := Status{Viewers: len(h.viewers), YouHold: h.holder == v}
		if h.holder != nil {
			s.Holder = h.holder.name
		}
		st = &s
	}
	if len(out) == 0 {
		err = v.err
	}
	return out, st, err
}

// Take gives the keyboard to v; the previous holder watches from then on.
func (v *Viewer) Take() error {
	h := v.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if v.err != nil {
		return v.err
	}
	if h.holder != v {
		h.holder = v
		h.statusChangedLocked()
	}
	return nil
}

// Release gives up the keyboard if v holds it (a viewer whose input has
// ended, still reading the output).
func (v *Viewer) Release() {
	h := v.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holder == v {
		h.holder = nil
		h.statusChangedLocked()
	}
}

// Write types p on the console when v holds the keyboard (or takes it,
// when nobody holds it), and refuses with ErrNotHolder otherwise.
func (v *Viewer) Write(p []byte) (int, error) {
	if err := v.hub.input(v, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close detaches the viewer; its keyboard, if it held it, is free.
func (v *Viewer) Close() error {
	h := v.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.detachLocked(v, ErrViewerClosed)
	return nil
}

// ring keeps the last RingSize bytes written.
type ring struct {
	data    []byte
	wrapped bool // more than RingSize bytes were written: the start is cut
}

func (r *ring) write(p []byte) {
	r.data = append(r.data, p...)
	if len(r.data) > 2*RingSize {
		r.data = append([]byte(nil), r.data[len(r.data)-RingSize:]...)
	}
	if len(r.data) > RingSize {
		r.wrapped = true
	}
}

// replay is a copy of the kept output. When its start was cut, it starts
// after the first line break, so a terminal does not begin with half a
// line or half an escape sequence.
func (r *ring) replay() []byte {
	d := r.data
	if len(d) > RingSize {
		d = d[len(d)-RingSize:]
	}
	if r.wrapped {
		for i, b := range d {
			if b == '\n' {
				d = d[i+1:]
				break
			}
		}
	}
	return append([]byte(nil), d...)
}
