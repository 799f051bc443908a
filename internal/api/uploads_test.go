package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// files lists every file under dir but the store's, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "." && !strings.HasPrefix(rel, "stagehand.db") {
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// templateCreator is a user who may create templates and import archives
// in default/main (its admin), with an API token: the refusals below are
// the file rules', not the role's.
func templateCreator(t *testing.T, l *apitest.Lab) string {
	t.Helper()
	u := l.User(t, "tc", false)
	err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		org, err := tx.Orgs().Get("default")
		if err != nil {
			return err
		}
		ws, err := tx.Workspaces().Get(org.ID, "main")
		if err != nil {
			return err
		}
		return tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: "admin"})
	})
	if err != nil {
		t.Fatal(err)
	}
	return l.Token(t, "tc", apitest.TokenOptions{})
}

func send(t *testing.T, srv *httptest.Server, token, method, path, ctype string, body io.Reader, size int64, h http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	for k, v := range h {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Trailer, b
}

// TestServerPathsAreForbiddenToCallers is C2 over HTTP: a user with every
// right on templates and archives, and a system administrator over a
// token (TCP), who name /etc/shadow as a disk, a kernel or a bundle get
// 403 telling them to upload; the system administrator on the socket
// (apitest.Serve's Root) gets 403 outside the import directory. Nothing
// is created in the data dir.
func TestServerPathsAreForbiddenToCallers(t *testing.T) {
	l := apitest.New(t).Seed(t)
	strict, _ := apitest.ServeStrict(t, l)
	root, _ := apitest.Serve(t, l)
	user, admin := templateCreator(t, l), l.AdminToken(t)
	before := files(t, l.DataDir())
	img := l.Image(t, "ok.qcow2", 1<<20)
	for _, b := range []string{
		`{"name":"leak","disks":["/etc/shadow"],"format":"raw"}`,
		`{"name":"leak","disks":["` + img + `"],"kernel":"/etc/shadow","initrd":"/etc/shadow"}`,
	} {
		for who, tok := range map[string]string{"user": user, "admin token": admin} {
			code, _, out := send(t, strict, tok, "POST", "/api/v1/templates", "application/json", strings.NewReader(b), -1, nil)
			if code != http.StatusForbidden || !strings.Contains(string(out), "upload") {
				t.Errorf("%s: POST /templates %s: %d %s, want 403 saying to upload", who, b, code, out)
			}
		}
		code, _, out := send(t, root, "", "POST", "/api/v1/templates", "application/json", strings.NewReader(b), -1, nil)
		if code != http.StatusForbidden || !strings.Contains(string(out), "import directory") {
			t.Errorf("root on the socket: POST /templates %s: %d %s, want 403 (not under an import directory)", b, code, out)
		}
	}
	code, _, out := send(t, strict, user, "POST", "/api/v1/archives/import", "application/json", strings.NewReader(`{"file":"/etc/shadow"}`), -1, nil)
	if code != http.StatusForbidden || !strings.Contains(string(out), "upload") {
		t.Errorf("POST /archives/import /etc/shadow: %d %s, want 403", code, out)
	}
	if after := files(t, l.DataDir()); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("data dir changed:\n%v\n%v", before, after)
	}
	if _, err := l.Templates.Get(context.Background(), "leak"); err == nil {
		t.Error("template leak exists")
	}
}

func makeArchive(t *testing.T, l *apitest.Lab) {
	t.Helper()
	j, err := l.Archives.StartCreate(context.Background(), "web", "arch", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if j, err = l.Jobs().Wait(ctx, j.ID); err != nil || j.State != jobs.Succeeded {
		t.Fatalf("archive: %+v %v", j, err)
	}
}

// TestExportCreatesNothingOnTheServer is C3: the old export, which wrote
// a file at a path the caller named, is gone (a request to it creates
// nothing there), and the download streams the bundle, its sha256 in the
// trailer, without the server writing any file, in its data dir or
// elsewhere.
func TestExportCreatesNothingOnTheServer(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.Serve(t, l)
	makeArchive(t, l)
	target := filepath.Join(t.TempDir(), "planted.sh")
	code, _, _ := send(t, srv, "", "POST", "/api/v1/archives/arch/export", "application/json", strings.NewReader(`{"file":"`+target+`"}`), -1, nil)
	if code < 400 || code >= 500 {
		t.Errorf("POST /archives/arch/export: %d, want a 4xx", code)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Errorf("%s was created", target)
	}
	beforeAll := files(t, l.Dir)
	code, trailer, body := send(t, srv, "", "GET", "/api/v1/archives/arch/bundle", "", nil, 0, nil)
	if code != 200 || len(body) < 1024 || trailer.Get(wire.HeaderContentSHA256) != hexSum(body) {
		t.Fatalf("GET bundle: %d, %d bytes, trailer %q, sha256 %s", code, len(body), trailer.Get(wire.HeaderContentSHA256), hexSum(body))
	}
	if after := files(t, l.Dir); strings.Join(after, " ") != strings.Join(beforeAll, " ") {
		t.Errorf("the download changed the server's files:\n%v\n%v", beforeAll, after)
	}
	if code, _, _ := send(t, srv, "", "GET", "/api/v1/archives/nope/bundle", "", nil, 0, nil); code != 404 {
		t.Errorf("bundle of a missing archive: %d", code)
	}
	// The bundle goes back in as an upload.
	h := http.Header{wire.HeaderContentSHA256: {hexSum(body)}, wire.HeaderFileName: {"arch.tar"}}
	code, _, out := send(t, srv, "", "POST", "/api/v1/archives/upload?name=copy&map_network=lan=lan", wire.ContentTypeBundle, bytes.NewReader(body), int64(len(body)), h)
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %s", code, out)
	}
	j := decodeAs[wire.Job](t, out)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if jj, err := l.Jobs().Wait(ctx, j.ID); err != nil || jj.State != jobs.Succeeded {
		t.Fatalf("import: %+v %v", jj, err)
	}
	if left := files(t, filepath.Join(l.DataDir(), "uploads")); len(left) != 0 {
		t.Errorf("uploads left: %v", left)
	}
}

// multipartBody is a template upload: parts (field, file name, bytes, the
// sha256 announced).
type filePart struct {
	field, name string
	data        []byte
	sum         string
}

func multipartBody(t *testing.T, parts ...filePart) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, p.field, p.name))
		h.Set(wire.HeaderContentSHA256, p.sum)
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

// TestTemplateUpload: a user uploads a disk and a kernel: 201, the
// template exists, the uploads are gone. A sha256 that does not match
// is 400 and leaves nothing; so does a part the protocol does not know.
func TestTemplateUpload(t *testing.T) {
	l := apitest.New(t)
	srv, _ := apitest.ServeStrict(t, l)
	tok := templateCreator(t, l)
	img, err := os.ReadFile(l.Image(t, "d.qcow2", 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	kernel := bytes.Repeat([]byte("kernel"), 100)
	ct, body := multipartBody(t, filePart{"disk", "d.qcow2", img, strings.ToUpper(hexSum(img))}, filePart{"kernel", "vmlinuz", kernel, hexSum(kernel)})
	code, _, out := send(t, srv, tok, "POST", "/api/v1/templates/upload?name=up&cpus=2&cmdline=console%3DttyS0", ct, bytes.NewReader(body), -1, nil)
	if code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, out)
	}
	if tm := decodeAs[wire.Template](t, out); tm.Name != "up" || tm.CPUs != 2 || len(tm.Disks) != 1 || tm.Kernel == "" || tm.Disks[0].VirtualSize != 1<<30 {
		t.Errorf("template: %+v", tm)
	}
	uploads := filepath.Join(l.DataDir(), "uploads")
	before := files(t, l.DataDir())
	for _, c := range []struct {
		what  string
		parts []filePart
	}{
		{"wrong sha256", []filePart{{"disk", "d.qcow2", img, hexSum(kernel)}}},
		{"no sha256", []filePart{{"disk", "d.qcow2", img, ""}}},
		{"unknown part", []filePart{{"disk", "d.qcow2", img, hexSum(img)}, {"extra", "x", kernel, hexSum(kernel)}}},
		{"kernel before disk", []filePart{{"kernel", "k", kernel, hexSum(kernel)}, {"disk", "d.qcow2", img, hexSum(img)}}},
	} {
		ct, body := multipartBody(t, c.parts...)
		code, _, out := send(t, srv, tok, "POST", "/api/v1/templates/upload?name=bad", ct, bytes.NewReader(body), -1, nil)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", c.what, code, out)
		}
		if left := files(t, uploads); len(left) != 0 {
			t.Errorf("%s: uploads left %v", c.what, left)
		}
	}
	if after := files(t, l.DataDir()); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("refused uploads changed the data dir:\n%v\n%v", before, after)
	}
}

// TestUploadLimitAndCancel: past serve's limit an upload is 413, whether
// its length is announced or not, and leaves nothing; a client that goes
// away in the middle of an upload leaves nothing either.
func TestUploadLimitAndCancel(t *testing.T) {
	l := apitest.New(t, func(o *lab.Options) { o.MaxUpload = 1 << 20 })
	srv, _ := apitest.Serve(t, l)
	uploads := filepath.Join(l.DataDir(), "uploads")
	big := bytes.Repeat([]byte{1}, 3<<20)
	h := http.Header{wire.HeaderContentSHA256: {hexSum(big)}}
	for _, size := range []int64{int64(len(big)), -1} {
		code, _, out := send(t, srv, "", "POST", "/api/v1/archives/upload", wire.ContentTypeBundle, bytes.NewReader(big), size, h)
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("%d bytes (announced %d): %d %s, want 413", len(big), size, code, out)
		}
		if left := files(t, uploads); len(left) != 0 {
			t.Errorf("uploads left %v", left)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go pw.Write(bytes.Repeat([]byte{2}, 512<<10)) // less than the limit, then nothing
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/api/v1/archives/upload", pr)
	req.Header.Set("Content-Type", wire.ContentTypeBundle)
	req.Header.Set(wire.HeaderContentSHA256, hexSum(nil))
	done := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, "the upload's file", func() bool { return len(files(t, uploads)) == 1 })
	// The client goes away: its request is cancelled and its body ends
	// in an error (the transport then cuts the connection).
	cancel()
	pw.CloseWithError(context.Canceled)
	<-done
	waitFor(t, "the upload's file to go", func() bool { return len(files(t, uploads)) == 0 })
	waitFor(t, "the upload's journal entry to go", func() bool {
		var ops []store.Op
		l.Store().View(context.Background(), func(tx store.Tx) (err error) { ops, err = tx.Ops().List(); return })
		return len(ops) == 0
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("waited 20s for %s", what)
}
