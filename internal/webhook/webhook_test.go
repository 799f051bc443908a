package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is a webhook endpoint on 127.0.0.1 that answers each post with
// the next status of its script (200 when the script ends) after delay.
type receiver struct {
	mu     sync.Mutex
	script []int
	delay  time.Duration
	posts  []post
	got    chan post
}

type post struct {
	body, signature, contentType string
	at                           time.Time
}

func newReceiver(t *testing.T, delay time.Duration, script ...int) (*receiver, string) {
	r := &receiver{script: script, delay: delay, got: make(chan post, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		p := post{body: string(b), signature: req.Header.Get(SignatureHeader), contentType: req.Header.Get("Content-Type"), at: time.Now()}
		r.mu.Lock()
		status := http.StatusOK
		if len(r.script) > 0 {
			status, r.script = r.script[0], r.script[1:]
		}
		r.posts = append(r.posts, p)
		r.mu.Unlock()
		r.got <- p
		select {
		case <-time.After(r.delay):
		case <-req.Context().Done():
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL + "/hook"
}

func (r *receiver) next(t *testing.T, within time.Duration) post {
	t.Helper()
	select {
	case p := <-r.got:
		return p
	case <-time.After(within):
		t.Fatalf("no post within %s", within)
		return post{}
	}
}

func newSender(t *testing.T, opts Options) *Sender {
	s := New(opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(s.Close)
	return s
}

// TestDeliversSignedBody: the receiver gets the body as sent, as JSON, with
// the HMAC-SHA256 signature of that body under the secret; without a
// secret no signature header is sent.
func TestDeliversSignedBody(t *testing.T) {
	r, url := newReceiver(t, 0)
	s := newSender(t, Options{AllowLoopback: true})
	body := []byte(`{"event":"lease-warn","config":"web"}`)
	s.Send(url, "s3cret", body)
	p := r.next(t, 5*time.Second)
	if p.body != string(body) || p.contentType != "application/json" {
		t.Errorf("received %q (%s), want %q as application/json", p.body, p.contentType, body)
	}
	// Computed here independently of Sign: HMAC-SHA256("s3cret", body).
	if want := "sha256=" + hmacHex("s3cret", body); p.signature != want {
		t.Errorf("signature %q, want %q", p.signature, want)
	}
	s.Send(url, "", body)
	if p := r.next(t, 5*time.Second); p.signature != "" {
		t.Errorf("unsigned post carries signature %q", p.signature)
	}
}

// TestRetriesAfterServerError: a 500 is tried again after the backoff, and
// the second attempt is accepted; a 400 is not tried again.
func TestRetriesAfterServerError(t *testing.T) {
	r, url := newReceiver(t, 0, http.StatusInternalServerError, http.StatusOK)
	s := newSender(t, Options{AllowLoopback: true, Backoff: 200 * time.Millisecond})
	s.Send(url, "", []byte(`{}`))
	first := r.next(t, 5*time.Second)
	second := r.next(t, 5*time.Second)
	if gap := second.at.Sub(first.at); gap < 200*time.Millisecond {
		t.Errorf("retried after %s, want the backoff (200ms) first", gap)
	}
	select {
	case p := <-r.got:
		t.Errorf("a third post after the 200: %+v", p)
	case <-time.After(500 * time.Millisecond):
	}

	r2, url2 := newReceiver(t, 0, http.StatusBadRequest)
	s.Send(url2, "", []byte(`{}`))
	r2.next(t, 5*time.Second)
	select {
	case <-r2.got:
		t.Errorf("a 400 was retried")
	case <-time.After(500 * time.Millisecond):
	}
}

// TestSlowReceiverNeverBlocksTheSender: Send returns at once while the
// receiver sits on the post; the attempt is cut at the timeout and tried
// again.
func TestSlowReceiverNeverBlocksTheSender(t *testing.T) {
	r, url := newReceiver(t, time.Hour)
	s := newSender(t, Options{AllowLoopback: true, Timeout: 300 * time.Millisecond, Backoff: 50 * time.Millisecond, Attempts: 2})
	start := time.Now()
	for range 3 {
		s.Send(url, "", []byte(`{}`))
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("Send took %s with a receiver that never answers", d)
	}
	first := r.next(t, 5*time.Second)
	// The same notice again after timeout + backoff: the first attempt was
	// cut at the timeout, not left waiting an hour.
	var again post
	for again = r.next(t, 5*time.Second); again.at.Sub(first.at) < 100*time.Millisecond; again = r.next(t, 5*time.Second) {
	}
	if gap := again.at.Sub(first.at); gap < 300*time.Millisecond || gap > 2*time.Second {
		t.Errorf("second attempt %s after the first, want about timeout + backoff (350ms)", gap)
	}
}

// TestRefusesLoopbackUnlessAllowed: without AllowLoopback the post to
// 127.0.0.1 never reaches the receiver.
func TestRefusesLoopbackUnlessAllowed(t *testing.T) {
	r, url := newReceiver(t, 0)
	s := newSender(t, Options{Backoff: 10 * time.Millisecond, Attempts: 2})
	s.Send(url, "", []byte(`{}`))
	select {
	case p := <-r.got:
		t.Fatalf("loopback receiver got %q", p.body)
	case <-time.After(500 * time.Millisecond):
	}
	for _, a := range []string{"127.0.0.1:80", "[::1]:443", "169.254.169.254:80", "0.0.0.0:80"} {
		if err := checkAddress(a, false); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("checkAddress(%s) = %v, want refused", a, err)
		}
	}
	if err := checkAddress("127.0.0.1:80", true); err != nil {
		t.Errorf("loopback allowed: %v", err)
	}
	if err := checkAddress("10.1.2.3:80", false); err != nil {
		t.Errorf("private address: %v", err)
	}
}

func hmacHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}
