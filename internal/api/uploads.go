package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

// Files travel in requests (uploads) and answers (downloads), never as
// paths on the daemon's host: see wire/uploads.go for the protocol. An
// upload's body is streamed into the lab (lab.Uploads.Receive), not read
// whole by readBody; a download is written as the lab reads the archive.

// Uploads is what the upload endpoints need (lab.Uploads).
type Uploads interface {
	Receive(ctx context.Context, name string, r io.Reader, size int64, sha256 string) (*lab.Upload, error)
	Limit() int64
}

// isUpload reports whether r is an upload, whose body its handler
// streams (readBody lets it through).
func isUpload(r *http.Request) bool {
	return r.Method == http.MethodPost &&
		(r.URL.Path == wire.APIPrefix+"/templates/upload" || r.URL.Path == wire.APIPrefix+"/archives/upload")
}

// uploadIdle cuts an upload whose body stops arriving for that long; an
// upload that keeps arriving may last as long as it needs.
const uploadIdle = 2 * time.Minute

// answerTimeout bounds the write of an upload's answer, or of each piece
// of a download: the server's write timeout counts from the request's
// headers, which a large file outlasts.
const answerTimeout = time.Minute

// startUpload lifts r's write deadline (the transfer and the import that
// follows may outlast the server's write timeout) and returns its body,
// read under an idle deadline. done bounds the write of the answer.
func startUpload(w http.ResponseWriter, r *http.Request) (body io.Reader, done func()) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	return &idleReader{r: r.Body, rc: rc}, func() {
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Now().Add(answerTimeout))
	}
}

// idleReader sets a read deadline of uploadIdle before each read.
type idleReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (i *idleReader) Read(p []byte) (int, error) {
	_ = i.rc.SetReadDeadline(time.Now().Add(uploadIdle))
	return i.r.Read(p)
}

// wantSHA256 is the checksum a request or a part announces: the hex of
// X-Content-SHA256, or the base64 sha-256 of a Digest header (RFC 3230).
// "" when neither is given (Receive refuses that).
func wantSHA256(h textproto.MIMEHeader) string {
	if s := h.Get(wire.HeaderContentSHA256); s != "" {
		return s
	}
	for _, d := range strings.Split(h.Get("Digest"), ",") {
		alg, v, ok := strings.Cut(strings.TrimSpace(d), "=")
		if ok && strings.EqualFold(alg, "sha-256") {
			if b, err := base64.StdEncoding.DecodeString(v); err == nil {
				return hex.EncodeToString(b)
			}
			return v // wrong: Receive says so
		}
	}
	return ""
}

// declaredSize is a part's Content-Length, or -1.
func declaredSize(h textproto.MIMEHeader) int64 {
	n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// tooLarge answers an upload past the limit with 413, and closes the
// connection: the rest of the body is not read.
func tooLarge(w http.ResponseWriter, err error) error {
	w.Header().Set("Connection", "close")
	return writeJSON(w, http.StatusRequestEntityTooLarge, wire.Error{Error: err.Error(), Kind: wire.KindInvalid})
}

// uploadError answers err of an upload: 413 for a file past the limit;
// else the usual mapping (the caller returns it).
func uploadError(w http.ResponseWriter, err error) error {
	if errors.Is(err, lab.ErrTooLarge) {
		return tooLarge(w, err)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(w, err)
	}
	return err
}

// downloadWriter is a download's answer: it announces the sha256 trailer
// and the content type with the first byte, hashes what it writes, and
// bounds each write (a stalled reader is cut).
type downloadWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	h       hashState
	started bool
}

type hashState interface {
	io.Writer
	Sum([]byte) []byte
}

func newDownloadWriter(w http.ResponseWriter) *downloadWriter {
	d := &downloadWriter{w: w, rc: http.NewResponseController(w), h: sha256.New()}
	_ = d.rc.SetWriteDeadline(time.Time{})
	return d
}

func (d *downloadWriter) Write(p []byte) (int, error) {
	if !d.started {
		d.started = true
		d.w.Header().Set("Content-Type", wire.ContentTypeBundle)
		d.w.Header().Set("Trailer", wire.HeaderContentSHA256)
		d.w.WriteHeader(http.StatusOK)
	}
	_ = d.rc.SetWriteDeadline(time.Now().Add(answerTimeout))
	n, err := d.w.Write(p)
	d.h.Write(p[:n])
	return n, err
}

// finish sets the trailer: the sha256 of everything written.
func (d *downloadWriter) finish() {
	if !d.started {
		d.Write(nil)
	}
	d.w.Header().Set(wire.HeaderContentSHA256, hex.EncodeToString(d.h.Sum(nil)))
}
