// Waypost inbox: live regions refreshed on Server-Sent Events, and actions through the JSON API.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const regions = () => Array.from(document.querySelectorAll("[data-live-src]"));
  const pending = new Map();
  let wakeTimer = null;

  function flash(text) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.textContent = when.toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
    });
  }

  function newKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function api(url, body) {
    // FormData goes as multipart (a file), anything else as JSON
    const multipart = body instanceof FormData;
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: multipart ? { "X-CSRF-Token": csrf } : { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: multipart ? body : JSON.stringify(body ?? {}),
    });
    const data = await response.json().catch(() => ({}));
    if (response.status === 401) location.assign(document.body.dataset.login + "?next=" + encodeURIComponent(location.pathname));
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  // A refresh never swaps a region while a press is in progress: the button pressed would be replaced
  // between its pointerdown and pointerup, and its click lost. It waits for the press to end (and its
  // click to be dispatched), or at most PRESS_WAIT_MS for a press that never reports its end.
  const PRESS_WAIT_MS = 2000;
  let pressEnded = null;
  let endPress = null;
  document.addEventListener("pointerdown", () => {
    if (!pressEnded) pressEnded = new Promise((resolve) => { endPress = resolve; });
  }, true);
  const release = () => {
    if (!endPress) return;
    const done = endPress;
    endPress = null;
    pressEnded = null;
    setTimeout(done, 0);  // after the click this press makes
  };
  document.addEventListener("pointerup", release, true);
  document.addEventListener("pointercancel", release, true);

  // What the operator has typed into a region's forms survives its refresh: a live change must not wipe a
  // half-filled field (a snooze time) nor take its focus. A field is known by its form's action and its name.
  const TYPED = "form[data-api] input[name], form[data-api] textarea[name]";
  const fieldKey = (field) => `${field.form?.dataset.api ?? ""} ${field.name}`;
  function typedInto(el) {
    const edits = new Map();
    el.querySelectorAll(TYPED).forEach((field) => {
      if (field.type !== "hidden" && field.type !== "file" && field.value !== field.defaultValue) edits.set(fieldKey(field), field.value);
    });
    const focused = el.contains(document.activeElement) && document.activeElement.name ? fieldKey(document.activeElement) : null;
    return { edits, focused };
  }
  function restore(el, { edits, focused }) {
    el.querySelectorAll(TYPED).forEach((field) => {
      const key = fieldKey(field);
      if (edits.has(key)) field.value = edits.get(key);
      if (key === focused) field.focus();
    });
  }

  // Resolves to how long the server took (ms): the request until its body is in.
  async function refresh(el) {
    const began = performance.now();
    const response = await fetch(el.dataset.liveSrc, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.status === 401 || response.redirected) return location.reload();
    if (!response.ok) return performance.now() - began;
    const html = await response.text();
    const took = performance.now() - began;
    if (pressEnded) await Promise.race([pressEnded, new Promise((resolve) => setTimeout(resolve, PRESS_WAIT_MS))]);
    const edits = typedInto(el);
    el.innerHTML = html;
    restore(el, edits);
    localTimes(el);
    afterRefresh(el);
    return took;
  }

  // Refresh at once; changes arriving meanwhile (a webhook with many messages, a reply and its
  // statuses) coalesce into one more refresh when this one ends. Live changes keep the server busy
  // with a region at most a tenth of the time: the next refresh waits until ten times the last one's
  // fetch has passed since it began (a second at most, so one slow fetch does not hold the next change
  // long). A busy number changes hundreds of rows a second, and back-to-back list renders took a third
  // of the web process (issue 17); a quiet number's change still shows at once, and so does the effect
  // of the operator's own action (`now`).
  const BUSY_SHARE = 10;
  const MAX_WAIT_MS = 1000;
  const notBefore = new Map();
  function schedule(el, now = false) {
    const entry = pending.get(el);
    if (entry) {
      entry.dirty = true;
      entry.now ||= now;
      if (now && entry.timer !== null) { clearTimeout(entry.timer); start(el, entry); }
      return;
    }
    const fresh = { dirty: false, now: false, timer: null };
    pending.set(el, fresh);
    const wait = now ? 0 : (notBefore.get(el) ?? 0) - performance.now();
    if (wait > 0) fresh.timer = setTimeout(() => start(el, fresh), wait);
    else start(el, fresh);
  }
  function start(el, entry) {
    Object.assign(entry, { dirty: false, now: false, timer: null }); // this refresh covers every change so far
    const began = performance.now();
    let took = null;
    refresh(el).then((fetched) => { took = fetched; }).catch(() => {}).finally(() => {
      // a failed or reloading refresh is paced by how long it took, too (a flapping server)
      notBefore.set(el, began + Math.min(BUSY_SHARE * (took ?? performance.now() - began), MAX_WAIT_MS));
      pending.delete(el);
      if (entry.dirty) schedule(el, entry.now);
    });
  }

  function afterRefresh(el) {
    if (el.dataset.markRead && document.visibilityState === "visible") api(el.dataset.markRead).catch(() => {});
    const list = el.querySelector("[data-next-wake]") || (el.dataset.nextWake !== undefined ? el : null);
    if (list) wakeAt(list.dataset.nextWake);
  }

  // A snoozed notification comes back by itself: refetch when the earliest snooze ends.
  function wakeAt(iso) {
    clearTimeout(wakeTimer);
    if (!iso) return;
    const delay = Math.max(0, new Date(iso) - Date.now()) + 250;
    wakeTimer = setTimeout(() => regions().forEach((el) => {
      if (el.dataset.liveOn.includes("notifications")) schedule(el);
    }), Math.min(delay, 2 ** 31 - 1));
  }

  function matches(el, change) {
    if (!el.dataset.liveOn.split(",").includes(change.table)) return false;
    const only = el.dataset.liveConversation;
    return !only || String(change.conversation_id) === only || change.table === "notifications";
  }

  function listen() {
    if (!document.querySelector("[data-live-src]")) return;
    const status = document.getElementById("live-status");
    const source = new EventSource(document.body.dataset.events);
    source.addEventListener("open", () => { if (status) status.dataset.state = "live"; });
    source.addEventListener("change", (event) => {
      const change = JSON.parse(event.data);
      regions().forEach((el) => { if (matches(el, change)) schedule(el); });
    });
    // Sent on every (re)connection and after a server-side gap: refetch everything.
    source.addEventListener("resync", () => regions().forEach((el) => schedule(el)));
    source.addEventListener("error", () => {
      if (status) status.dataset.state = "reconnecting";
      // The browser retries by itself unless the stream was refused (closed); then start again.
      if (source.readyState === EventSource.CLOSED) setTimeout(listen, 3000);
    });
  }

  // "Reply" on a message: the next text or file is sent as a reply to it (WhatsApp quotes it).
  function replyTo(button) {
    const banner = document.getElementById("replying-to");
    document.querySelectorAll("form input[name=reply_to]").forEach((input) => { input.value = button ? button.dataset.replyTo : ""; });
    if (!banner) return;
    banner.hidden = !button;
    banner.querySelector("q").textContent = button ? button.dataset.quote : "";
  }

  document.addEventListener("click", (event) => {
    const reply = event.target.closest("button[data-reply-to]");
    if (reply) replyTo(reply);
    if (event.target.closest("button[data-cancel-reply]")) replyTo(null);
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    event.preventDefault();
    button.disabled = true;
    try {
      await api(button.dataset.action, button.dataset.body ? JSON.parse(button.dataset.body) : {});
      flash("");
      if (button.dataset.then) return location.assign(button.dataset.then);
      regions().forEach((el) => schedule(el, true));
    } catch (err) {
      flash(err.message);
    } finally {
      button.disabled = false;
    }
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-api]");
    if (!form) return;
    event.preventDefault();
    const fields = new FormData(form);
    if (!fields.get("reply_to")) fields.delete("reply_to");
    const body = "multipart" in form.dataset ? fields : Object.fromEntries(fields);
    if ("until" in body) body.until = new Date(body.until).toISOString();
    if (body.reply_to && !(body instanceof FormData)) body.reply_to = Number(body.reply_to);
    const submit = form.querySelector("button[type=submit]");
    if (submit) submit.disabled = true;
    try {
      await api(form.dataset.api, body);
      flash("");
      form.reset();
      if (form.elements.client_key) form.elements.client_key.value = newKey();
      if (form.elements.reply_to) replyTo(null);
      regions().forEach((el) => schedule(el, true));
    } catch (err) {
      flash(err.message);
    } finally {
      if (submit) submit.disabled = false;
    }
  });

  // The template picker: the chosen template's fields are shown and enabled (a hidden one is not
  // validated nor sent), and its preview shows each value where its {{placeholder}} stands.
  function chooseTemplate(form) {
    const chosen = form.elements.template.value;
    form.querySelectorAll("fieldset[data-template-index]").forEach((set) => {
      const on = set.dataset.templateIndex === chosen;
      set.hidden = !on;
      set.disabled = !on;
    });
  }

  function previewValue(input) {
    const set = input.closest("fieldset[data-template-index]");
    if (!set) return;
    set.querySelectorAll(".slot").forEach((slot) => {
      if (slot.dataset.part !== input.dataset.part || slot.dataset.key !== input.dataset.key) return;
      slot.textContent = input.value || slot.dataset.empty;
      slot.classList.toggle("filled", Boolean(input.value));
    });
  }

  function resetTemplates(form) {
    form.reset();
    form.querySelectorAll("fieldset[data-template-index] input[data-part]").forEach(previewValue);
    chooseTemplate(form);
    form.elements.client_key.value = newKey();
  }

  document.addEventListener("change", (event) => {
    if (event.target.matches("form[data-template-api] select[name=template]")) chooseTemplate(event.target.form);
  });

  document.addEventListener("input", (event) => {
    if (event.target.matches("form[data-template-api] input[data-part]")) previewValue(event.target);
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-template-api]");
    if (!form) return;
    event.preventDefault();
    const set = form.querySelector("fieldset[data-template-index]:not([disabled])");
    if (!set) return flash("Choose a template first.");
    const values = (part) => Array.from(set.querySelectorAll(`input[data-part=${part}]`));
    const body = {
      name: set.dataset.name,
      language: set.dataset.language,
      client_key: form.elements.client_key.value,
      parameters: values("body").map((input) => input.value),
      header_parameters: values("header").map((input) => input.value),
      button_parameters: values("button").map((input) => ({ index: Number(input.dataset.index), text: input.value })),
    };
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      await api(form.dataset.templateApi, body);
      flash("");
      resetTemplates(form);
      regions().forEach((el) => schedule(el, true));
    } catch (err) {
      flash(err.message);  // the values stay, to be corrected
    } finally {
      submit.disabled = false;
    }
  });

  document.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter breaks the line.
    if (event.key === "Enter" && !event.shiftKey && event.target.matches("#reply-form textarea")) {
      event.preventDefault();
      event.target.form.requestSubmit();
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("form[data-api] input[name=client_key], form[data-template-api] input[name=client_key]").forEach((input) => { input.value = newKey(); });
    document.querySelectorAll("form[data-template-api]").forEach(chooseTemplate);
    localTimes(document);
    regions().forEach(afterRefresh);
    listen();
  });
})();
