package webui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// assetFS holds the console's own static files (app.css, app.js, …) and
// vendor/, the JavaScript scripts/build-web.sh copies from web/'s npm
// packages; in a tree where it was not run, vendor/ holds only its
// placeholders and the pages say so.
//
//go:embed all:assets
var assetFS embed.FS

// vendorFiles are the vendored files the pages load: one missing means
// scripts/build-web.sh has not run (or not since a package was added).
var vendorFiles = []string{
	"vendor/htmx/htmx.min.js",
	"vendor/htmx/sse.min.js",
	"vendor/xterm/xterm.js",
	"vendor/xterm/xterm.css",
	"vendor/xterm/addon-fit.js",
	"vendor/novnc/core/rfb.js",
}

// errAssetsMissing is what the pages say when the vendored JavaScript is
// not there.
const errAssetsMissing = "web assets not built: run scripts/build-web.sh"

// assetServer serves the static files under AssetsPath. Their URLs carry
// the content's hash (?v=), so a browser may keep them for good and still
// loads the new ones after an upgrade.
type assetServer struct {
	fs      fs.FS
	files   http.Handler
	version string   // hash of every file
	missing []string // vendorFiles absent
}

func newAssetServer(fsys fs.FS) *assetServer {
	if fsys == nil {
		sub, err := fs.Sub(assetFS, "assets")
		if err != nil {
			panic(err) // the embedded tree always has assets/
		}
		fsys = sub
	}
	a := &assetServer{fs: fsys, files: http.FileServerFS(fsys)}
	for _, f := range vendorFiles {
		if _, err := fs.Stat(fsys, f); err != nil {
			a.missing = append(a.missing, f)
		}
	}
	h := sha256.New()
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err == nil {
			fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
			h.Write(b)
		}
		return nil
	})
	a.version = hex.EncodeToString(h.Sum(nil))[:12]
	return a
}

// Missing returns the pages' message when vendored files are absent, else
// "".
func (a *assetServer) Missing() string {
	if len(a.missing) == 0 {
		return ""
	}
	return fmt.Sprintf("%s (missing %s)", errAssetsMissing, strings.Join(a.missing, ", "))
}

// URL is the address of the static file name (relative to assets/).
func (a *assetServer) URL(name string) string {
	return AssetsPath + name + "?v=" + a.version
}

func (a *assetServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, AssetsPath)
	// No listings, no dot files (the vendor dir's placeholders).
	if name == "" || strings.HasSuffix(name, "/") || strings.HasPrefix(path.Base(name), ".") {
		http.NotFound(w, r)
		return
	}
	if r.URL.Query().Get("v") == a.version {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + name
	a.files.ServeHTTP(w, r2)
}
