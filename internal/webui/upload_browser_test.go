package webui_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"stagehand/internal/api"
	"stagehand/internal/webui"
)

// chromium is Debian's chromium (scripts/install-deps.sh installs it).
const chromium = "/usr/bin/chromium"

// browse starts a headless Chromium signed in to c with session, whose
// every request but to loopback goes to a closed proxy port: the test
// reaches nothing outside 127.0.0.1.
func browse(t *testing.T, c *console, session string) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no browser in the fast tier")
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("chromium not installed (scripts/install-deps.sh installs Debian's chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("proxy-server", "127.0.0.1:9"), // loopback is never proxied
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	// The session cookie, as the sign-in would have set it.
	err := chromedp.Do(ctx,
		chromedp.Navigate(c.srv.URL+webui.SignInPath),
		chromedp.Evaluate[chromedp.Void](`document.cookie = "`+api.SessionCookie+`=`+session+`; path=/; SameSite=Strict"`),
	)
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// TestUploadsFromTheBrowser: in a real Chromium, the template import
// dialog hashes the chosen disk image in the page and uploads it as the
// multipart body the API reads (its SHA-256 checked), and the browser
// lands on the new template's page; the same import again shows the
// API's one-line refusal next to the action; a bundle exported through
// the export link's route is imported back by upload, its job followed
// to the end; a new token is shown once in its dialog.
func TestUploadsFromTheBrowser(t *testing.T) {
	c := objectLab(t)
	s := c.admin(t)
	ctx := browse(t, c, s)
	img := c.Image(t, "up.qcow2", 64<<20)

	importTemplate := func(name string) error {
		return chromedp.Do(ctx,
			chromedp.Navigate(c.srv.URL+"/ui/templates"),
			chromedp.Click(chromedp.CSS(`button[data-action="template.import"]`)),
			chromedp.SendKeys(chromedp.CSS(`#dlg-template-import [data-field="name"]`), name),
			chromedp.SetUploadFiles(chromedp.CSS(`#dlg-template-import [data-field="disk"]`), []string{img}),
			chromedp.Click(chromedp.CSS(`#dlg-template-import [data-action="template.import.confirm"]`)),
		)
	}
	if err := importTemplate("uploaded"); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`button[data-action="template.delete"]`))); err != nil {
		t.Fatalf("after the import: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatalf("after the import: %v", err)
	}
	if !strings.HasSuffix(loc, "/ui/templates/uploaded") {
		t.Errorf("the import led to %s", loc)
	}
	tv, err := c.Templates.Get(context.Background(), "uploaded")
	if err != nil || len(tv.Disks) != 1 {
		t.Fatalf("template uploaded: %v %+v", err, tv)
	}

	// Again: the API refuses the name, and says so in the dialog.
	if err := importTemplate("uploaded"); err != nil {
		t.Fatal(err)
	}
	msg, err := chromedp.Run(ctx,
		chromedp.Poll[string](`(document.querySelector('#dlg-template-import [data-error]')||{}).textContent`,
			chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil || !strings.Contains(msg, "uploaded") || strings.Contains(msg, "\n") {
		t.Errorf("the refused import shows %q (%v), want the API's one-line message naming the template", msg, err)
	}

	// Export through the link's route, import back by upload.
	res, err := (&http.Client{}).Do(func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, c.srv.URL+"/api/v1/archives/web-arch/bundle", nil)
		r.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: s})
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "web-arch.tar")
	f, err := os.Create(bundle)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, res.Body)
	res.Body.Close()
	f.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("export: %d %v", res.StatusCode, err)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(c.srv.URL+"/ui/archives"),
		chromedp.Click(chromedp.CSS(`button[data-action="archive.import"]`)),
		chromedp.SetUploadFiles(chromedp.CSS(`#dlg-archive-import [data-field="bundle"]`), []string{bundle}),
		chromedp.SendKeys(chromedp.CSS(`#dlg-archive-import [data-field="name"]`), "web-arch-2"),
		chromedp.Click(chromedp.CSS(`#dlg-archive-import [data-action="archive.import.confirm"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="web-arch-2"]`)),
	)
	if err != nil {
		t.Fatalf("import by upload: %v", err)
	}
	if _, err := c.Archives.Get(context.Background(), "web-arch-2"); err != nil {
		t.Errorf("archive web-arch-2 after the import: %v", err)
	}

	// A new token is shown once.
	err = chromedp.Do(ctx,
		chromedp.Navigate(c.srv.URL+"/ui/tokens"),
		chromedp.Click(chromedp.CSS(`button[data-action="token.create"]`)),
		chromedp.SendKeys(chromedp.CSS(`#dlg-token-create [data-field="name"]`), "ci"),
		chromedp.Click(chromedp.CSS(`#dlg-token-create [data-action="token.create.confirm"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#dlg-token-create [data-result]`)),
	)
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	tok, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(`#dlg-token-create [data-result]`)))
	if err != nil || !strings.HasPrefix(tok, "sht_") {
		t.Errorf("token create shows %q (%v), want the new sht_ token", tok, err)
	}
}
