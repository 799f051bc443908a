// Stagehand web console: the behaviour every page shares. Actions are
// requests to the REST API (/api/v1), the same the CLI sends, with JSON
// bodies built from their dialog's fields; the API's one-line error is
// shown next to the action. Live updates come from the event stream
// (htmx's SSE extension) and re-fetch only the parts an event concerns.
// No inline script: the pages' Content-Security-Policy allows none.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // api sends one request to the API and returns the decoded answer, or
  // throws an Error carrying the API's one-line message.
  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw new Error("the daemon cannot be reached: " + e.message);
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!res.ok) {
      const msg = data && data.error ? data.error : (text.trim() || res.status + " " + res.statusText);
      const err = new Error(msg);
      err.status = res.status;
      throw err;
    }
    return { status: res.status, data };
  }

  // setPath sets obj's value at a path such as "vms[0].name".
  function setPath(obj, path, value) {
    const keys = path.match(/[^.[\]]+/g);
    let o = obj;
    keys.forEach((k, i) => {
      const last = i === keys.length - 1;
      const nextIsIndex = !last && /^\d+$/.test(keys[i + 1]);
      if (last) { o[k] = value; return; }
      if (o[k] === undefined) o[k] = nextIsIndex ? [] : {};
      o = o[k];
    });
  }

  // ---- action dialogs ----------------------------------------------------

  // fieldsOf returns the inputs of an action's form (not the box that
  // shows an answer).
  function fieldsOf(form) { return $$("[data-field]", form).filter((el) => !el.hasAttribute("data-result")); }

  function fieldValue(el) {
    if (el.dataset.kind === "bool") return el.checked;
    if (el.dataset.kind === "file") return Array.from(el.files || []).map((f) => f.name).join(" ");
    if (el.dataset.kind === "password") return el.value;
    const v = el.value.trim();
    if (el.dataset.kind === "number" && v !== "") return Number(v);
    return v;
  }

  // active reports whether a field counts: one that requires a bool field
  // counts only while that one is checked.
  function active(form, el) {
    const req = el.dataset.requires;
    if (!req) return true;
    const dep = $(`[data-field="${CSS.escape(req)}"]`, form);
    return dep ? dep.checked : true;
  }

  function quote(s) {
    s = String(s);
    if (s !== "" && /^[A-Za-z0-9._:/@=,+-]+$/.test(s)) return s;
    return "'" + s.replace(/'/g, "'\\''") + "'";
  }

  // cliLine fills the action's CLI line from its fields.
  function cliLine(form) {
    const values = {};
    fieldsOf(form).forEach((el) => { values[el.dataset.field] = fieldValue(el); });
    let line = (form.dataset.cli || "").replace(/\{([^}]+)\}/g, (_, k) => {
      const v = values[k];
      return v === undefined || v === "" ? "{" + k + "}" : quote(v);
    });
    fieldsOf(form).forEach((el) => {
      if (!active(form, el)) return;
      const flag = el.dataset.flag;
      if (el.dataset.kind === "bool") {
        if (el.checked && flag) line += " " + flag;
        else if (!el.checked && el.dataset.flagOff) line += " " + el.dataset.flagOff;
      } else if (el.dataset.kind === "file") {
        Array.from(el.files || []).forEach((f) => { line += " " + (flag ? flag + " " : "") + quote(f.name); });
      } else if (el.dataset.kind === "password") {
        // never shown
      } else if (flag && fieldValue(el) !== "") {
        line += " " + flag + " " + quote(fieldValue(el));
      }
    });
    return line;
  }

  function updateCLI(form) {
    const out = $("[data-cli-line]", form);
    if (out) out.textContent = cliLine(form);
  }

  // bodyOf builds the JSON body, or throws naming the first missing field.
  function bodyOf(form) {
    const body = {};
    for (const el of fieldsOf(form)) {
      if (!active(form, el)) continue;
      if (el.dataset.kind === "file") {
        if (el.required && !(el.files && el.files.length)) throw new Error(labelOf(el) + " is required");
        continue; // sent as the upload's body
      }
      const v = fieldValue(el);
      if (el.dataset.kind === "confirm") {
        if (v !== el.dataset.confirmValue) throw new Error(`type "${el.dataset.confirmValue}" to confirm`);
        continue;
      }
      if (el.required && v === "") throw new Error(labelOf(el) + " is required");
      if (v === "" && el.type !== "hidden") continue; // the API's default
      setPath(body, el.dataset.field, v);
    }
    return body;
  }

  function labelOf(el) {
    const label = el.closest("label");
    return label ? label.firstChild.textContent.trim() : el.dataset.field;
  }

  function thenURL(form, body) {
    const then = form.dataset.then;
    if (!then) return null;
    return then.replace(/\{([^}]+)\}/g, (_, k) => encodeURIComponent(body[k] || ""));
  }

  function showError(box, msg) {
    const e = $("[data-error]", box);
    if (e) e.textContent = msg || "";
  }

  // followJob shows a started job's progress until it ends.
  async function followJob(form, job) {
    const box = $("[data-progress-box]", form);
    const bar = $("[data-progress]", form);
    const text = $("[data-progress-text]", form);
    box.hidden = false;
    for (;;) {
      if (job.total > 0) {
        bar.max = job.total;
        bar.value = job.done;
        text.textContent = `${job.kind} ${Math.floor((100 * job.done) / job.total)} %`;
      } else {
        bar.removeAttribute("value");
        text.textContent = `${job.kind} ${job.state}`;
      }
      if (job.state !== "running") break;
      await new Promise((r) => setTimeout(r, 500));
      job = (await api("GET", "/api/v1/jobs/" + encodeURIComponent(job.id))).data;
    }
    if (job.state !== "succeeded") throw new Error(job.error || `job ${job.id} ${job.state}`);
    bar.max = 1; bar.value = 1;
    text.textContent = `${job.kind} done`;
  }

  async function submitAction(form) {
    showError(form, "");
    let body;
    try {
      body = bodyOf(form);
    } catch (e) {
      showError(form, e.message);
      return;
    }
    const buttons = $$("button", form);
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const method = form.dataset.apiMethod;
      const res = form.dataset.upload
        ? await upload(form, body)
        : await api(method, form.dataset.apiPath, method === "DELETE" ? undefined : body);
      if (res.status === 202 && res.data && res.data.id && res.data.state) {
        await followJob(form, res.data);
      }
      if (form.hasAttribute("data-ask")) {
        showAnswer(form, res.data || {});
        buttons.forEach((b) => { b.disabled = false; });
        return;
      }
      if (form.dataset.show && res.data && res.data[form.dataset.show]) {
        showOnce(form, res.data[form.dataset.show]);
        return;
      }
      const to = thenURL(form, body);
      if (to) location.assign(to); else location.reload();
    } catch (e) {
      showError(form, e.message);
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // showAnswer shows each field of the API's answer to a question (an
  // Ask action) below its form: a key, and its value (yes/no for a
  // boolean).
  function showAnswer(form, data) {
    const box = $("[data-answer]", form);
    box.replaceChildren();
    Object.entries(data).forEach(([k, v]) => {
      const pair = document.createElement("div");
      const dt = document.createElement("dt");
      dt.textContent = k.replace(/_/g, " ");
      const dd = document.createElement("dd");
      dd.dataset.answerKey = k;
      dd.textContent = typeof v === "boolean" ? (v ? "yes" : "no") : String(v);
      pair.append(dt, dd);
      box.append(pair);
    });
    box.hidden = false;
  }

  // showOnce shows an answer given once (a token's secret) in place of
  // the dialog's fields; closing the dialog then reloads the page.
  function showOnce(form, value) {
    const box = $("[data-result-box]", form);
    const out = $("[data-result]", form);
    // A path (a console link's) is shown as the address to hand out.
    out.value = String(value).startsWith("/") ? location.origin + value : value;
    box.hidden = false;
    $$("label, .cli, [data-progress-box]", form).forEach((el) => { if (!box.contains(el)) el.hidden = true; });
    const submit = $("button[type=submit]", form);
    submit.hidden = true;
    const cancel = $('[data-action="dialog.cancel"]', form);
    cancel.disabled = false;
    cancel.textContent = "Done";
    form.closest("dialog").dataset.reloadOnClose = "1";
    out.focus();
    out.select();
  }

  // ---- uploads --------------------------------------------------------------

  // sha256 returns a file's SHA-256 in hex, which the API checks
  // (X-Content-SHA256). crypto.subtle digests a whole buffer at once, so
  // a file too large to hold in memory is hashed in slices by sha256js.
  const wholeFileLimit = 256 * 1024 * 1024;
  async function sha256(file, onProgress) {
    if (window.crypto && crypto.subtle && file.size <= wholeFileLimit) {
      const d = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
      onProgress(file.size);
      return hex(new Uint8Array(d));
    }
    const h = sha256js();
    const slice = 8 * 1024 * 1024;
    for (let off = 0; off < file.size; off += slice) {
      h.update(new Uint8Array(await file.slice(off, off + slice).arrayBuffer()));
      onProgress(Math.min(off + slice, file.size));
    }
    return hex(h.digest());
  }

  function hex(bytes) { return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""); }

  // sha256js is an incremental SHA-256 (FIPS 180-4).
  function sha256js() {
    const K = new Uint32Array([
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
    const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    const W = new Uint32Array(64);
    const block = new Uint8Array(64);
    let fill = 0, length = 0;
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    function compress(b) {
      for (let i = 0; i < 16; i++) W[i] = (b[4 * i] << 24) | (b[4 * i + 1] << 16) | (b[4 * i + 2] << 8) | b[4 * i + 3];
      for (let i = 16; i < 64; i++) {
        const s0 = rotr(W[i - 15], 7) ^ rotr(W[i - 15], 18) ^ (W[i - 15] >>> 3);
        const s1 = rotr(W[i - 2], 17) ^ rotr(W[i - 2], 19) ^ (W[i - 2] >>> 10);
        W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
      }
      let [a, b2, c, d, e, f, g, h] = H;
      for (let i = 0; i < 64; i++) {
        const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b2) ^ (a & c) ^ (b2 & c))) | 0;
        h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b2; b2 = a; a = (t1 + t2) | 0;
      }
      H[0] += a; H[1] += b2; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
    }
    return {
      update(data) {
        length += data.length;
        let i = 0;
        if (fill > 0) {
          const n = Math.min(64 - fill, data.length);
          block.set(data.subarray(0, n), fill);
          fill += n; i = n;
          if (fill < 64) return;
          compress(block); fill = 0;
        }
        for (; i + 64 <= data.length; i += 64) compress(data.subarray(i, i + 64));
        block.set(data.subarray(i), 0);
        fill = data.length - i;
      },
      digest() {
        const bits = length * 8;
        const pad = new Uint8Array((fill < 56 ? 56 : 120) - fill + 8);
        pad[0] = 0x80;
        const hi = Math.floor(bits / 0x100000000), lo = bits >>> 0;
        const n = pad.length;
        pad[n - 8] = hi >>> 24; pad[n - 7] = hi >>> 16; pad[n - 6] = hi >>> 8; pad[n - 5] = hi;
        pad[n - 4] = lo >>> 24; pad[n - 3] = lo >>> 16; pad[n - 2] = lo >>> 8; pad[n - 1] = lo;
        this.update(pad);
        const out = new Uint8Array(32);
        H.forEach((w, i) => { out[4 * i] = w >>> 24; out[4 * i + 1] = w >>> 16; out[4 * i + 2] = w >>> 8; out[4 * i + 3] = w; });
        return out;
      },
    };
  }

  // headerSafe keeps a file name to the characters a header or a
  // multipart header may carry.
  function headerSafe(name) { return name.replace(/[^\x20-\x7e]|["\\]/g, "_"); }

  // upload sends the form's files to its API path as wire/uploads.go
  // says: the other fields in the query; each file with its SHA-256,
  // hashed here first; a multipart body (one part per file, named by its
  // field's part, in order) or the one file as the body. The upload's
  // progress shows in the dialog; the answer is as api()'s.
  async function upload(form, fields) {
    const box = $("[data-progress-box]", form);
    const bar = $("[data-progress]", form);
    const text = $("[data-progress-text]", form);
    box.hidden = false;
    const files = [];
    fieldsOf(form).filter((el) => el.dataset.kind === "file").forEach((el) => {
      Array.from(el.files || []).forEach((f) => files.push({ part: el.dataset.part, file: f }));
    });
    if (!files.length) throw new Error("choose a file to upload");
    const total = files.reduce((n, f) => n + f.file.size, 0);
    let hashed = 0;
    for (const f of files) {
      const before = hashed;
      f.sha = await sha256(f.file, (done) => {
        bar.max = total || 1; bar.value = before + done;
        text.textContent = `hashing ${f.file.name}`;
      });
      hashed += f.file.size;
    }
    const q = new URLSearchParams();
    const flat = (prefix, v) => {
      if (Array.isArray(v)) v.forEach((x) => flat(prefix, x));
      else if (v !== null && typeof v === "object") Object.keys(v).forEach((k) => flat(k, v[k]));
      else q.append(prefix, String(v));
    };
    Object.keys(fields).forEach((k) => flat(k, fields[k]));
    const url = form.dataset.apiPath + (q.toString() ? "?" + q.toString() : "");
    const headers = { Accept: "application/json" };
    let body;
    if (form.dataset.upload === "multipart") {
      const boundary = "stagehand-" + hex(crypto.getRandomValues(new Uint8Array(16)));
      const parts = [];
      files.forEach((f) => {
        parts.push(`--${boundary}\r\nContent-Disposition: form-data; name="${f.part}"; filename="${headerSafe(f.file.name)}"\r\n` +
          `Content-Type: application/octet-stream\r\nX-Content-SHA256: ${f.sha}\r\nContent-Length: ${f.file.size}\r\n\r\n`);
        parts.push(f.file, "\r\n");
      });
      parts.push(`--${boundary}--\r\n`);
      body = new Blob(parts);
      headers["Content-Type"] = "multipart/form-data; boundary=" + boundary;
    } else {
      body = files[0].file;
      headers["Content-Type"] = "application/x-tar";
      headers["X-Content-SHA256"] = files[0].sha;
      headers["X-File-Name"] = headerSafe(files[0].file.name);
    }
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(form.dataset.apiMethod || "POST", url);
      xhr.withCredentials = true;
      Object.keys(headers).forEach((k) => xhr.setRequestHeader(k, headers[k]));
      xhr.upload.addEventListener("progress", (ev) => {
        bar.max = ev.total || total || 1; bar.value = ev.loaded;
        text.textContent = `uploading ${Math.floor((100 * ev.loaded) / (ev.total || total || 1))} %`;
      });
      xhr.addEventListener("error", () => reject(new Error("the daemon cannot be reached: the upload was cut")));
      xhr.addEventListener("load", () => {
        let data = null;
        try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch (_) { data = null; }
        if (xhr.status < 200 || xhr.status > 299) {
          const err = new Error(data && data.error ? data.error : (xhr.responseText.trim() || String(xhr.status)));
          err.status = xhr.status;
          reject(err);
          return;
        }
        text.textContent = "uploaded";
        resolve({ status: xhr.status, data });
      });
      xhr.send(body);
    });
  }

  document.addEventListener("close", (ev) => {
    if (ev.target.matches && ev.target.matches("dialog[data-reload-on-close]")) location.reload();
  }, true);

  document.addEventListener("click", (ev) => {
    const opener = ev.target.closest("[data-dialog]");
    if (opener) {
      const dlg = document.getElementById(opener.dataset.dialog);
      if (!dlg) return;
      const form = $("form", dlg);
      if (form && form.dataset.apiPath) { form.reset(); showError(form, ""); updateCLI(form); }
      $$("[data-progress-box]", dlg).forEach((b) => { b.hidden = true; });
      $$("button", dlg).forEach((b) => { b.disabled = false; });
      dlg.showModal();
      const first = $("input:not([type=hidden]), select, textarea", dlg);
      if (first) first.focus();
      return;
    }
    const cancel = ev.target.closest('[data-action="dialog.cancel"]');
    if (cancel) { cancel.closest("dialog").close(); return; }
    if (ev.target.closest('[data-action="session.logout"]')) { logout(); }
  });

  document.addEventListener("input", (ev) => {
    const form = ev.target.closest("form[data-api-path]");
    if (form) updateCLI(form);
    if (ev.target.matches("[data-filter-text]")) filterChanged();
  });
  document.addEventListener("change", (ev) => {
    const form = ev.target.closest("form[data-api-path]");
    if (form) updateCLI(form);
    if (ev.target.matches("[data-filter-state]")) filterChanged();
    if (ev.target.matches('[data-action="workspace.switch"]')) switchWorkspace(ev.target.value);
  });
  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (form.matches("form[data-api-path]")) { ev.preventDefault(); submitAction(form); }
    else if (form.id === "signin") { ev.preventDefault(); signIn(form); }
  });

  // ---- session ------------------------------------------------------------

  async function signIn(form) {
    showError(form, "");
    const user = $('[data-field="user"]', form).value.trim();
    const password = $('[data-field="password"]', form).value;
    if (!user || !password) { showError(form, "enter your user name and password"); return; }
    const button = $("button[type=submit]", form);
    button.disabled = true;
    try {
      await api("POST", "/api/v1/login", { user, password });
      location.assign(form.dataset.next || "/ui/configs");
    } catch (e) {
      showError(form, e.message);
      button.disabled = false;
    }
  }

  async function logout() {
    try {
      await api("POST", "/api/v1/logout");
      location.assign("/ui/login");
    } catch (e) {
      const box = $("[data-logout-error]");
      if (box) box.textContent = e.message;
    }
  }

  function switchWorkspace(ws) {
    document.cookie = "stagehand_workspace=" + encodeURIComponent(ws) + "; path=/ui; SameSite=Strict";
    const u = new URL(location.href);
    if (ws) u.searchParams.set("workspace", ws); else u.searchParams.delete("workspace");
    location.assign(u.toString());
  }

  // ---- list filter -----------------------------------------------------------

  function filterText() { return ($("[data-filter-text]") || {}).value || ""; }
  function filterState() { return ($("[data-filter-state]") || {}).value || ""; }

  // filterList hides the rows the filter does not pass, among those the
  // page holds (the server's test for a filtered list: configsFilter).
  function filterList() {
    const state = filterState();
    const words = filterText().toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    $$("[data-live-list] tbody tr[data-name]").forEach((tr) => {
      const hay = (tr.dataset.search || tr.dataset.name).toLowerCase();
      const ok = (!state || tr.dataset.state === state) && words.every((w) => hay.includes(w));
      tr.hidden = !ok;
      if (ok) shown++;
    });
    const empty = $("[data-empty]");
    if (empty) empty.hidden = shown > 0 || !!$("[data-live-list] tr[data-more]");
  }

  // filterChanged applies a new filter: at once to the rows the page
  // holds, and, when the list holds only part of the configurations (more
  // to load, or loaded under another filter), by loading the list again
  // with the filter from the server.
  let filterTimer = null;
  function filterChanged() {
    filterList();
    const list = $('[data-live-list="config"]');
    if (!list) return;
    const partial = !!$("tr[data-more]", list) || list.dataset.loadedQ || list.dataset.loadedState;
    clearTimeout(filterTimer);
    if (partial) filterTimer = setTimeout(() => reloadRows(list), 200);
  }

  // ---- long lists: the rest of the rows as the user scrolls -------------------

  // rowsOf parses a fragment of table rows.
  function rowsOf(html) {
    const tmpl = document.createElement("template");
    tmpl.innerHTML = html.trim();
    return Array.from(tmpl.content.children).filter((el) => el.tagName === "TR");
  }

  function listError(msg) {
    const box = $("[data-list-error]");
    if (box) box.textContent = msg || "";
  }

  async function getRows(url) {
    let res;
    try {
      res = await fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } });
    } catch (e) {
      throw new Error("the daemon cannot be reached: " + e.message);
    }
    const text = await res.text();
    if (!res.ok) throw new Error(text.trim() || res.status + " " + res.statusText);
    return rowsOf(text);
  }

  // loadMore replaces a marker row with the rows it stands for (and the
  // next marker, if more follow).
  async function loadMore(marker) {
    if (marker.dataset.loading) return;
    marker.dataset.loading = "1";
    let rows;
    try {
      rows = await getRows(marker.dataset.more);
    } catch (e) {
      listError(e.message);
      delete marker.dataset.loading;
      return;
    }
    if (!marker.isConnected) return; // the list was loaded again meanwhile
    listError("");
    // A live update may have put one of these rows in already.
    const have = new Set($$("tr[data-name]", marker.parentNode).map((tr) => tr.dataset.name));
    marker.replaceWith(...rows.filter((tr) => !tr.dataset.name || !have.has(tr.dataset.name)));
    afterRows();
  }

  // reloadRows loads the list again from its start under the current
  // filter; an answer overtaken by a newer filter is dropped.
  let reloadSeq = 0;
  async function reloadRows(list) {
    const seq = ++reloadSeq;
    const q = filterText().trim(), state = filterState();
    const params = new URLSearchParams();
    if (q) params.set("q", q);
    if (state) params.set("state", state);
    if (list.dataset.workspace) params.set("workspace", list.dataset.workspace);
    let rows;
    try {
      rows = await getRows("/ui/config-rows?" + params.toString());
    } catch (e) {
      if (seq === reloadSeq) listError(e.message);
      return;
    }
    if (seq !== reloadSeq) return;
    listError("");
    $("tbody", list).replaceChildren(...rows);
    list.dataset.loadedQ = q;
    list.dataset.loadedState = state;
    // The address keeps the filter: a reload or a shared link shows the
    // same list.
    const u = new URL(location.href);
    if (q) u.searchParams.set("q", q); else u.searchParams.delete("q");
    if (state) u.searchParams.set("state", state); else u.searchParams.delete("state");
    history.replaceState(null, "", u.pathname + u.search + u.hash);
    afterRows();
  }

  function afterRows() {
    tick();
    filterList();
    watchMore();
  }

  // Markers are loaded when they come within a screen of the viewport.
  const moreObserver = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    entries.forEach((en) => { if (en.isIntersecting) loadMore(en.target); });
  }, { rootMargin: "100% 0px" }) : null;

  function watchMore() {
    $$("tr[data-more]").forEach((tr) => {
      if (tr.dataset.watched) return;
      tr.dataset.watched = "1";
      if (moreObserver) moreObserver.observe(tr);
    });
  }

  document.addEventListener("click", (ev) => {
    const more = ev.target.closest('[data-action="configs.more"]');
    if (more) loadMore(more.closest("tr[data-more]"));
  });

  // ---- countdowns ------------------------------------------------------------

  function span(ms) {
    const s = Math.floor(Math.abs(ms) / 1000);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m`;
    return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  }

  function tick() {
    const now = Date.now();
    $$("time[data-deadline]").forEach((t) => {
      const left = Number(t.dataset.deadline) - now;
      t.textContent = left >= 0 ? "in " + span(left) : span(left) + " ago";
      t.classList.toggle("soon", left >= 0 && left < 3600e3);
      t.classList.toggle("over", left < 0);
    });
  }
  setInterval(tick, 1000);

  // ---- live updates from the event stream ------------------------------------

  // lastEventID is the newest event seen: a stream the SSE extension opens
  // again after an error resumes from it (the browser's own reconnect
  // sends Last-Event-ID itself).
  let lastEventID = 0;

  function withAfter(url) {
    if (!lastEventID) return url;
    const u = new URL(url, location.href);
    u.searchParams.set("after", String(lastEventID));
    return u.pathname + u.search;
  }

  // streams are the open event streams. Leaving the page closes them: an
  // open one holds one of the browser's six connections to the daemon
  // after the page is gone, and a page kept in the back/forward cache
  // would hold it until evicted. Coming back from that cache reopens them
  // through the extension's own reconnect (its onerror on a closed
  // stream), which resumes after the last event seen.
  const streams = new Set();
  let paused = [];
  window.addEventListener("pagehide", () => {
    paused = [...streams].filter((s) => s.readyState !== EventSource.CLOSED);
    paused.forEach((s) => s.close());
  });
  window.addEventListener("pageshow", (ev) => {
    const again = paused;
    paused = [];
    if (ev.persisted) again.forEach((s) => { if (s.onerror) s.onerror(new Event("error")); });
  });

  function onEvent(msg) {
    if (msg.lastEventId) lastEventID = Math.max(lastEventID, Number(msg.lastEventId) || 0);
    let e;
    try { e = JSON.parse(msg.data); } catch (_) { return; }
    const log = $("[data-live-log]");
    if (log) addLogRow(log, e);
    $$("[data-live-refresh]").forEach((el) => {
      if (el.dataset.liveRefresh.split(",").includes(e.object)) refreshPart(el);
    });
    if (e.object !== "config") return;
    const subject = String(e.subject || "").split("/")[0];
    const list = $('[data-live-list="config"]');
    if (list) updateRow(list, subject, e);
    const page = $("[data-live-config]");
    if (page && page.dataset.liveConfig === subject) {
      if (e.action === "delete" && e.result === "ok") {
        $("[data-gone]").hidden = false;
        return;
      }
      document.body.dispatchEvent(new CustomEvent("stagehand:changed", { detail: e }));
    }
  }

  // updateRow fetches the row of the configuration an event is about and
  // puts it in place (new rows in name order); a 404 drops the row. A new
  // row past the rows loaded so far is left to the marker that loads them.
  async function updateRow(list, name, e) {
    const tbody = $("tbody", list);
    const row = $$("tr[data-name]", tbody).find((tr) => tr.dataset.name === name);
    if (e.action === "delete" && e.result === "ok") {
      if (row) row.remove();
      filterList();
      return;
    }
    let url = "/ui/configs/" + encodeURIComponent(name) + "/row";
    if (list.dataset.workspace) url += "?workspace=" + encodeURIComponent(list.dataset.workspace);
    const res = await fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } });
    if (res.status === 404) {
      if (row) row.remove();
      filterList();
      return;
    }
    if (!res.ok) return;
    const fresh = rowsOf(await res.text())[0];
    if (!fresh) return;
    const cur = $$("tr[data-name]", tbody).find((tr) => tr.dataset.name === name);
    if (cur) {
      cur.replaceWith(fresh);
    } else {
      const after = $$("tr[data-name]", tbody).find((tr) => tr.dataset.name > name);
      const marker = $("tr[data-more]", tbody);
      if (!after && marker) return;
      tbody.insertBefore(fresh, after || null);
    }
    tick();
    filterList();
  }

  // addLogRow puts a new event at the top of the activity log, when it
  // passes the page's filters (object, actor, subject).
  function addLogRow(table, e) {
    const f = table.dataset;
    if ((f.filterObject && e.object !== f.filterObject) || (f.filterActor && e.actor !== f.filterActor) ||
        (f.filterSubject && e.subject !== f.filterSubject)) return;
    const tbody = $("tbody", table);
    if ($$("tr[data-name]", tbody).some((tr) => tr.dataset.name === String(e.id))) return;
    const tr = document.createElement("tr");
    tr.dataset.name = String(e.id);
    tr.dataset.search = [e.actor, e.action, e.object, e.subject, e.detail].join(" ");
    const at = new Date(e.at);
    const cells = [
      ["At", at.toLocaleString()], ["Actor", e.actor], ["Action", e.action], ["Object", e.object],
      ["Subject", e.subject], ["Result", e.result], ["Detail", e.detail || ""],
    ];
    cells.forEach(([label, v]) => {
      const td = document.createElement("td");
      td.dataset.label = label;
      td.textContent = v == null ? "" : String(v);
      if (label === "Result" && v === "failed") td.className = "error";
      tr.appendChild(td);
    });
    tr.classList.add("fresh");
    tbody.insertBefore(tr, tbody.firstChild);
    const max = Number(f.max || 500);
    const rows = $$("tr[data-name]", tbody);
    rows.slice(max).forEach((r) => r.remove());
    const empty = $("[data-empty]");
    if (empty) empty.hidden = true;
    filterList();
  }

  // refreshPart fetches the page again and swaps in its element of the
  // same id, at most twice a second: a list kept current by the events
  // about its kind of object.
  const refreshing = new Map();
  function refreshPart(el) {
    if (!el.id || refreshing.has(el.id)) return;
    refreshing.set(el.id, setTimeout(async () => {
      refreshing.delete(el.id);
      try {
        const res = await fetch(location.href, { credentials: "same-origin" });
        if (!res.ok) return;
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        const fresh = doc.getElementById(el.id);
        const cur = document.getElementById(el.id);
        if (fresh && cur && !cur.querySelector("dialog[open]")) {
          cur.replaceWith(document.importNode(fresh, true));
          tick();
          filterList();
          pollJobs();
        }
      } catch (_) { /* the next event tries again */ }
    }, 500));
  }

  // ---- jobs: progress while some run -------------------------------------------

  // pollJobs updates the progress of the running jobs on the page once a
  // second, and stops when none runs (the job API has no stream).
  let pollingJobs = false;
  async function pollJobs() {
    if (pollingJobs) return;
    pollingJobs = true;
    try {
      for (;;) {
        const running = $$('tr[data-job][data-state="running"]');
        if (!running.length) break;
        await new Promise((r) => setTimeout(r, 1000));
        if (document.hidden) continue;
        let list;
        try { list = (await api("GET", "/api/v1/jobs")).data || []; } catch (_) { continue; }
        const byID = new Map(list.map((j) => [j.id, j]));
        let ended = false;
        running.forEach((tr) => {
          const j = byID.get(tr.dataset.job);
          if (!j) return;
          const bar = $("progress", tr);
          if (bar && j.total > 0) { bar.max = j.total; bar.value = j.done; }
          const pct = $("[data-percent]", tr);
          if (pct && j.total > 0) pct.textContent = Math.floor((100 * j.done) / j.total) + " %";
          if (j.state !== "running") ended = true;
        });
        if (ended) { const t = $("[data-live-refresh]"); if (t) refreshPart(t); await new Promise((r) => setTimeout(r, 800)); }
      }
    } finally {
      pollingJobs = false;
    }
  }

  document.addEventListener("htmx:sseMessage", (ev) => {
    const msg = ev.detail;
    if (msg && typeof msg.data === "string") onEvent(msg);
  });

  // ---- console thumbnails ------------------------------------------------------

  // Thumbnails are fetched every few seconds, only while they are on
  // screen and the tab is visible: no one looking, no screendump.
  const visible = new Set();
  const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    entries.forEach((en) => { if (en.isIntersecting) { visible.add(en.target); refresh(en.target); } else visible.delete(en.target); });
  }) : null;

  function refresh(img) {
    if (document.hidden || !img.isConnected) return;
    img.src = img.dataset.screen + (img.dataset.screen.includes("?") ? "&" : "?") + "t=" + Date.now();
  }

  function watchThumbnails(root) {
    $$("img[data-screen]", root).forEach((img) => {
      if (img.dataset.watched) return;
      img.dataset.watched = "1";
      // A failed screendump leaves the box's "no screen" showing.
      img.addEventListener("error", () => { img.hidden = true; });
      img.addEventListener("load", () => { img.hidden = false; });
      if (observer) observer.observe(img); else refresh(img);
    });
  }
  setInterval(() => {
    visible.forEach((img) => { if (!img.isConnected) visible.delete(img); else refresh(img); });
  }, 5000);

  document.addEventListener("htmx:afterSwap", (ev) => { watchThumbnails(ev.target); tick(); });

  document.addEventListener("DOMContentLoaded", () => {
    if (window.htmx) {
      // Replaces the extension's factory: a stream it opens again after an
      // error resumes from the last event seen.
      window.htmx.createEventSource = (url) => {
        streams.forEach((s) => { if (s.readyState === EventSource.CLOSED) streams.delete(s); });
        const s = new EventSource(withAfter(url), { withCredentials: true });
        streams.add(s);
        return s;
      };
    }
    tick();
    filterList();
    watchMore();
    watchThumbnails(document);
    pollJobs();
    $$("form[data-ask]").forEach(updateCLI); // a question's form may come filled
  });
})();
