// Package webhook posts JSON notices (the lease ladder's steps) to URLs
// that users configure, in the background: each post has a timeout, is
// retried with backoff after a failure, may be signed with HMAC-SHA256,
// and never makes its sender wait. It refuses, on every connection, the
// addresses a webhook must not reach unless told otherwise.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
// under the webhook's secret, when it has one.
const SignatureHeader = "X-Stagehand-Signature"

// Defaults of Options.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultAttempts = 5
	DefaultBackoff  = time.Second
	DefaultQueue    = 256
	maxBackoff      = time.Minute
	workers         = 4
)

// Options of a Sender.
type Options struct {
	// Timeout bounds one attempt: connecting, sending, reading the answer.
	Timeout time.Duration
	// Attempts is how many times a notice is tried (the first included).
	Attempts int
	// Backoff is the wait after the first failed attempt; it doubles
	// after each one, up to a minute.
	Backoff time.Duration
	// Queue is how many notices may wait; a notice sent to a full queue
	// is dropped (and logged) rather than making the sender wait.
	Queue int
	// AllowLoopback lets webhooks reach loopback addresses (the daemon's
	// own host). Off by default: a workspace admin's URL must not reach
	// services that listen only there. Link-local and unspecified
	// addresses (cloud metadata services among them) are refused always.
	AllowLoopback bool
}

// Sender posts notices in the background. Its zero value is not usable:
// use New.
type Sender struct {
	opts   Options
	log    *slog.Logger
	client *http.Client
	queue  chan delivery
	stop   chan struct{}
	start  sync.Once // the workers start with the first Send
	once   sync.Once
	wg     sync.WaitGroup
}

type delivery struct {
	url, secret string
	body        []byte
}

// New returns a Sender with opts (defaults filled in); its workers start
// with the first Send, and Close stops them.
func New(opts Options, log *slog.Logger) *Sender {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	dialer := &net.Dialer{Timeout: opts.Timeout, Control: func(_, address string, _ syscall.RawConn) error {
		return checkAddress(address, opts.AllowLoopback)
	}}
	s := &Sender{opts: opts, log: log, queue: make(chan delivery, opts.Queue), stop: make(chan struct{}),
		client: &http.Client{
			Timeout: opts.Timeout,
			// No proxy from the environment: it would connect for us,
			// past the address check.
			Transport: &http.Transport{DialContext: dialer.DialContext, Proxy: nil, TLSHandshakeTimeout: opts.Timeout},
			// A redirect could lead anywhere; the answer counts as is.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
	return s
}

// checkAddress refuses a connection to an address a webhook must not
// reach; it runs on the address actually dialled, after name resolution.
func checkAddress(address string, allowLoopback bool) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return fmt.Errorf("webhook: %s is not an address", host)
	case ip.IsUnspecified(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(), ip.IsMulticast():
		return fmt.Errorf("webhook: address %s is refused", ip)
	case ip.IsLoopback() && !allowLoopback:
		return fmt.Errorf("webhook: loopback address %s is refused (serve --lease-webhook-allow-loopback)", ip)
	}
	return nil
}

// Send queues body for url, signed with secret when it is not empty, and
// returns at once.
func (s *Sender) Send(url, secret string, body []byte) {
	select {
	case <-s.stop:
		return
	default:
	}
	s.start.Do(func() {
		for range workers {
			s.wg.Add(1)
			go s.work()
		}
	})
	select {
	case s.queue <- delivery{url: url, secret: secret, body: body}:
	default:
		s.log.Warn("webhook: queue full, notice dropped", "url", url)
	}
}

// Close stops the workers; notices still queued or being retried are
// dropped.
func (s *Sender) Close() {
	s.start.Do(func() {}) // no worker starts after Close
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
}

func (s *Sender) work() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case d := <-s.queue:
			s.deliver(d)
		}
	}
}

// deliver tries d until it is accepted, refused for good, or out of
// attempts.
func (s *Sender) deliver(d delivery) {
	wait := s.opts.Backoff
	for attempt := 1; ; attempt++ {
		err := s.post(d)
		if err == nil {
			s.log.Debug("webhook delivered", "url", d.url, "attempt", attempt)
			return
		}
		var final finalError
		if errors.As(err, &final) || attempt >= s.opts.Attempts {
			s.log.Warn("webhook not delivered", "url", d.url, "attempts", attempt, "err", err)
			return
		}
		s.log.Info("webhook: retrying", "url", d.url, "attempt", attempt, "in", wait, "err", err)
		select {
		case <-s.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxBackoff)
	}
}

// finalError is an answer that trying again will not change.
type finalError struct{ error }

// post makes one attempt.
func (s *Sender) post(d delivery) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return finalError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "stagehand-webhook")
	if d.secret != "" {
		req.Header.Set(SignatureHeader, Sign(d.secret, d.body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return fmt.Errorf("answered %s", resp.Status)
	}
	return finalError{fmt.Errorf("answered %s", resp.Status)}
}

// Sign returns the signature header's value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
