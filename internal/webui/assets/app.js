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

  function fieldsOf(form) { return $$("[data-field]", form); }

  function fieldValue(el) {
    if (el.dataset.kind === "bool") return el.checked;
    return el.value.trim();
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
      const v = fieldValue(el);
      if (el.dataset.kind === "confirm") {
        if (v !== el.dataset.confirmValue) throw new Error(`type "${el.dataset.confirmValue}" to confirm`);
        continue;
      }
      if (el.required && v === "") {
        const label = el.closest("label");
        throw new Error((label ? label.firstChild.textContent.trim() : el.dataset.field) + " is required");
      }
      if (v === "" && el.type !== "hidden") continue; // the API's default
      setPath(body, el.dataset.field, v);
    }
    return body;
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
      const res = await api(method, form.dataset.apiPath, method === "DELETE" ? undefined : body);
      if (res.status === 202 && res.data && res.data.id && res.data.state) {
        await followJob(form, res.data);
      }
      const to = thenURL(form, body);
      if (to) location.assign(to); else location.reload();
    } catch (e) {
      showError(form, e.message);
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

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
    if (ev.target.matches("[data-filter-text]")) filterList();
  });
  document.addEventListener("change", (ev) => {
    const form = ev.target.closest("form[data-api-path]");
    if (form) updateCLI(form);
    if (ev.target.matches("[data-filter-state]")) filterList();
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

  // ---- list filter (client side) -------------------------------------------

  function filterList() {
    const text = ($("[data-filter-text]") || {}).value || "";
    const state = ($("[data-filter-state]") || {}).value || "";
    const words = text.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    $$("[data-live-list] tbody tr[data-name]").forEach((tr) => {
      const hay = (tr.dataset.search || tr.dataset.name).toLowerCase();
      const ok = (!state || tr.dataset.state === state) && words.every((w) => hay.includes(w));
      tr.hidden = !ok;
      if (ok) shown++;
    });
    const empty = $("[data-empty]");
    if (empty) empty.hidden = shown > 0;
  }

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

  function onEvent(msg) {
    if (msg.lastEventId) lastEventID = Math.max(lastEventID, Number(msg.lastEventId) || 0);
    let e;
    try { e = JSON.parse(msg.data); } catch (_) { return; }
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
  // puts it in place (new rows in name order); a 404 drops the row.
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
    const tmpl = document.createElement("template");
    tmpl.innerHTML = (await res.text()).trim();
    const fresh = tmpl.content.querySelector("tr");
    if (!fresh) return;
    if (row) {
      row.replaceWith(fresh);
    } else {
      const after = $$("tr[data-name]", tbody).find((tr) => tr.dataset.name > name);
      tbody.insertBefore(fresh, after || null);
    }
    tick();
    filterList();
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
      window.htmx.createEventSource = (url) => new EventSource(withAfter(url), { withCredentials: true });
    }
    tick();
    filterList();
    watchThumbnails(document);
  });
})();
