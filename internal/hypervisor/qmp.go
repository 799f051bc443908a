package hypervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Sentinel errors of the QMP client. Test them with errors.Is.
var (
	// ErrMonitorTimeout means QEMU did not answer a command before the
	// context's deadline (or the monitor's default command timeout).
	ErrMonitorTimeout = errors.New("qmp: monitor timeout")
	// ErrMonitorDisconnect means the connection to QEMU was lost (QEMU
	// exited, or Close was called) before the answer arrived.
	ErrMonitorDisconnect = errors.New("qmp: monitor disconnected")
)

// DefaultCommandTimeout bounds a command whose context has no deadline, so
// that a wedged QEMU cannot hang a caller forever.
const DefaultCommandTimeout = 30 * time.Second

// eventBuffer is how many events wait for a reader before the oldest are
// dropped.
const eventBuffer = 64

// maxMessage bounds one QMP message. QEMU's replies are small; a bigger
// line means a broken peer.
const maxMessage = 16 << 20

// QMPError is an error returned by QEMU for one command.
type QMPError struct {
	Command string `json:"-"`
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// Event is an asynchronous QMP event such as SHUTDOWN, STOP or RESUME.
type Event struct {
	Name string
	Data json.RawMessage
	Time time.Time
}

// Monitor is a QMP client on one connection. Commands may be issued
// concurrently: each carries an id and its reply is matched by that id.
type Monitor struct {
	conn net.Conn

	writeMu sync.Mutex // one command line on the wire at a time

	mu      sync.Mutex
	pending map[string]chan reply
	closed  bool
	doneErr error // why the connection ended

	nextID  atomic.Uint64
	events  chan Event
	dropped atomic.Uint64
	done    chan struct{} // closed when the reader has stopped

	// CommandTimeout applies when a command's context has no deadline.
	commandTimeout time.Duration
}

type reply struct {
	ret json.RawMessage
	err error
}

// wireMessage is any message from QEMU: a greeting, a reply or an event.
type wireMessage struct {
	QMP       json.RawMessage `json:"QMP"`
	ID        json.RawMessage `json:"id"`
	Return    json.RawMessage `json:"return"`
	Error     *QMPError       `json:"error"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

type wireCommand struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        string `json:"id"`
}

// DialMonitor connects to the QMP unix socket at path, reads QEMU's
// greeting and negotiates capabilities. ctx bounds the whole handshake.
func DialMonitor(ctx context.Context, path string) (*Monitor, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	m, err := NewMonitor(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	return m, nil
}

// NewMonitor runs the QMP handshake on an open connection and starts
// reading replies and events. The monitor owns conn from then on.
func NewMonitor(ctx context.Context, conn net.Conn) (*Monitor, error) {
	// The handshake is synchronous: the greeting, then the reply to
	// qmp_capabilities. A deadline on the connection makes ctx effective.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}

	r := bufio.NewReaderSize(conn, 64<<10)
	fail := func(step string, err error) (*Monitor, error) {
		stop()
		conn.Close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: %w", step, ErrMonitorTimeout)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", step, ctx.Err())
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("%s: %w", step, ErrMonitorTimeout)
		}
		return nil, fmt.Errorf("%s: %w: %w", step, ErrMonitorDisconnect, err)
	}

	line, err := readLine(r)
	if err != nil {
		return fail("read greeting", err)
	}
	var greet wireMessage
	if err := json.Unmarshal(line, &greet); err != nil || greet.QMP == nil {
		stop()
		conn.Close()
		return nil, fmt.Errorf("read greeting: not a QMP greeting: %.200q", line)
	}

	caps, _ := json.Marshal(wireCommand{Execute: "qmp_capabilities", ID: "0"})
	if _, err := conn.Write(append(caps, '\n')); err != nil {
		return fail("qmp_capabilities", err)
	}
	for {
		line, err := readLine(r)
		if err != nil {
			return fail("qmp_capabilities", err)
		}
		var msg wireMessage
		if err := json.Unmarshal(line, &msg); err != nil {
			continue
		}
		if msg.Event != "" {
			continue // nobody can listen yet
		}
		if msg.Error != nil {
			stop()
			conn.Close()
			msg.Error.Command = "qmp_capabilities"
			return nil, msg.Error
		}
		break
	}
	if !stop() {
		// ctx ended while the handshake finished: the deadline may be
		// poisoned, so do not hand out this connection.
		return fail("qmp_capabilities", ctx.Err())
	}
	conn.SetDeadline(time.Time{})

	m := &Monitor{
		conn:           conn,
		pending:        make(map[string]chan reply),
		events:         make(chan Event, eventBuffer),
		done:           make(chan struct{}),
		commandTimeout: DefaultCommandTimeout,
	}
	go m.readLoop(r)
	return m, nil
}

func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxMessage {
			return nil, fmt.Errorf("message longer than %d bytes", maxMessage)
		}
		if !isPrefix {
			return line, nil
		}
	}
}

// readLoop delivers replies to their waiters and events to the channel.
// It never blocks on a slow consumer.
func (m *Monitor) readLoop(r *bufio.Reader) {
	var err error
	for {
		var line []byte
		line, err = readLine(r)
		if err != nil {
			break
		}
		var msg wireMessage
		if json.Unmarshal(line, &msg) != nil {
			continue // not JSON: ignore rather than kill the session
		}
		if msg.Event != "" {
			m.pushEvent(msg)
			continue
		}
		if msg.ID == nil {
			continue // a reply to no command of ours
		}
		id := string(msg.ID)
		if s, uerr := strconv.Unquote(id); uerr == nil {
			id = s
		}
		m.mu.Lock()
		ch, ok := m.pending[id]
		delete(m.pending, id)
		m.mu.Unlock()
		if !ok {
			continue // the waiter gave up (timeout)
		}
		if msg.Error != nil {
			ch <- reply{err: msg.Error}
		} else {
			ch <- reply{ret: msg.Return}
		}
	}

	m.mu.Lock()
	m.closed = true
	if m.doneErr == nil {
		m.doneErr = err
	}
	waiters := m.pending
	m.pending = nil
	m.mu.Unlock()
	for _, ch := range waiters {
		ch <- reply{err: fmt.Errorf("%w: %w", ErrMonitorDisconnect, err)}
	}
	close(m.events)
	close(m.done)
}

// pushEvent queues an event, dropping the oldest one when the buffer is
// full; only readLoop sends, so the non-blocking dance cannot lose a race
// against another sender.
func (m *Monitor) pushEvent(msg wireMessage) {
	ev := Event{Name: msg.Event, Data: msg.Data}
	if msg.Timestamp != nil {
		ev.Time = time.Unix(msg.Timestamp.Seconds, msg.Timestamp.Microseconds*1000)
	}
	for {
		select {
		case m.events <- ev:
			return
		default:
		}
		select {
		case <-m.events:
			m.dropped.Add(1)
		default:
		}
	}
}

// Execute runs one QMP command and returns its "return" value. args is
// marshalled as the command's arguments (nil for none). The context bounds
// the wait; without a deadline DefaultCommandTimeout applies. A reply that
// arrives after the timeout is discarded.
func (m *Monitor) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	return m.execute(ctx, cmd, args, nil)
}

// ExecuteWithFile is Execute with f's descriptor passed along the command
// (SCM_RIGHTS), as QMP's getfd takes a file. The connection must be a unix
// socket. QEMU holds its own copy: the caller may close f on return.
func (m *Monitor) ExecuteWithFile(ctx context.Context, cmd string, args any, f *os.File) (json.RawMessage, error) {
	if _, ok := m.conn.(*net.UnixConn); !ok {
		return nil, fmt.Errorf("qmp %s: a file can only be passed over a unix socket, not %T", cmd, m.conn)
	}
	return m.execute(ctx, cmd, args, f)
}

func (m *Monitor) execute(ctx context.Context, cmd string, args any, f *os.File) (json.RawMessage, error) {
	if _, ok := ctx.Deadline(); !ok && m.commandTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.commandTimeout)
		defer cancel()
	}

	id := strconv.FormatUint(m.nextID.Add(1), 10)
	line, err := json.Marshal(wireCommand{Execute: cmd, Arguments: args, ID: id})
	if err != nil {
		return nil, fmt.Errorf("qmp %s: encode arguments: %w", cmd, err)
	}
	ch := make(chan reply, 1)

	m.mu.Lock()
	if m.closed {
		err := m.doneErr
		m.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w: %w", cmd, ErrMonitorDisconnect, err)
	}
	m.pending[id] = ch
	m.mu.Unlock()

	forget := func() {
		m.mu.Lock()
		if m.pending != nil {
			delete(m.pending, id)
		}
		m.mu.Unlock()
	}

	m.writeMu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		m.conn.SetWriteDeadline(dl)
	}
	if f != nil {
		// The descriptor travels with the command's first byte; QEMU
		// takes it when it reads the command.
		_, _, err = m.conn.(*net.UnixConn).WriteMsgUnix(append(line, '\n'), syscall.UnixRights(int(f.Fd())), nil)
		runtime.KeepAlive(f)
	} else {
		_, err = m.conn.Write(append(line, '\n'))
	}
	m.writeMu.Unlock()
	if err != nil {
		forget()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("qmp %s: %w", cmd, ErrMonitorTimeout)
		}
		return nil, fmt.Errorf("qmp %s: %w: %w", cmd, ErrMonitorDisconnect, err)
	}

	select {
	case r := <-ch:
		if r.err != nil {
			var qe *QMPError
			if errors.As(r.err, &qe) {
				qe.Command = cmd
				return nil, qe
			}
			return nil, fmt.Errorf("qmp %s: %w", cmd, r.err)
		}
		return r.ret, nil
	case <-ctx.Done():
		forget()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("qmp %s: %w", cmd, ErrMonitorTimeout)
		}
		return nil, fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

// Events returns the channel of asynchronous events. It is closed when the
// connection ends. When nobody drains it, the oldest events are dropped.
func (m *Monitor) Events() <-chan Event { return m.events }

// DroppedEvents reports how many events were discarded because the event
// channel was full.
func (m *Monitor) DroppedEvents() uint64 { return m.dropped.Load() }

// Done is closed when the connection has ended, for whatever reason.
func (m *Monitor) Done() <-chan struct{} { return m.done }

// Close ends the connection. Commands in flight fail with
// ErrMonitorDisconnect. QEMU keeps running.
func (m *Monitor) Close() error {
	m.mu.Lock()
	if m.doneErr == nil {
		m.doneErr = errors.New("closed by client")
	}
	m.mu.Unlock()
	err := m.conn.Close()
	<-m.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
