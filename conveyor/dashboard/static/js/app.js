// The dashboard's shell: sign-in, the caller's permissions, hash routes, live refresh.
// Each page is a function (in pages.js) that renders into <main> and may return a refresh
// function. The pages of FEED_PAGES refresh when the server's change feed (GET /api/v1/events:
// server-sent events, fed by the store's notifications, narrowed to the caller's jobs) says
// something changed, at most once a second, and every SLOW_MS for what no notification
// announces (progress, worker heartbeats); while the feed is down, every REFRESH_MS instead.
import * as api from "./api.js";
import { h, toast } from "./ui.js";
import { PAGES } from "./pages.js";

const REFRESH_MS = 2000;
const SLOW_MS = 10000;
const MIN_GAP_MS = 1000; // one refresh a second at most, however many changes are announced
const FEED_PAGES = new Set(["overview", "jobs", "queues", "batches", "schedules", "workers"]);
// sessionStorage["conveyor.pollMs"]: the polling interval, fed or not (tests set it long).
const POLL_KEY = "conveyor.pollMs";

const state = {
  me: null,
  timer: null,
  route: 0,
  refresh: null, // the shown page's refresh function
  fed: false, // the shown page follows the change feed
  busy: false,
  lastRefresh: 0,
  queued: null, // a refresh waiting for its turn (MIN_GAP_MS)
  feed: null, // { controller, live }
};

function pollMs() {
  const set = Number(sessionStorage.getItem(POLL_KEY));
  if (set > 0) return set;
  return state.fed && state.feed && state.feed.live ? SLOW_MS : REFRESH_MS;
}

async function runRefresh() {
  const refresh = state.refresh;
  if (!refresh || document.hidden) return;
  if (state.busy) {
    requestRefresh(); // again once this one is done
    return;
  }
  state.busy = true;
  state.lastRefresh = Date.now();
  try {
    await refresh();
  } catch (failure) {
    if (failure.status !== 401) console.warn("refresh failed", failure);
  } finally {
    state.busy = false;
  }
}

// A change was announced: refresh now, or when a second has passed since the last refresh.
function requestRefresh() {
  if (!state.fed || state.queued) return;
  const wait = Math.max(0, state.lastRefresh + MIN_GAP_MS - Date.now());
  state.queued = setTimeout(() => {
    state.queued = null;
    runRefresh();
  }, wait);
}

function startTimer() {
  if (state.timer) clearInterval(state.timer);
  state.timer = state.refresh ? setInterval(runRefresh, pollMs()) : null;
  showLive();
}

// The header says how the page stays current: live (the feed), or refreshed every few seconds.
function showLive() {
  const el = document.getElementById("live");
  if (!el) return;
  const live = state.fed && state.feed && state.feed.live;
  el.className = live ? "live on" : "live";
  el.textContent = !state.refresh ? "" : live ? "live" : `refreshed every ${Math.round(pollMs() / 1000)} s`;
}

// One feed per tab, kept across pages; reconnects with backoff while signed in.
function startFeed() {
  if (state.feed) return;
  const feed = { controller: new AbortController(), live: false };
  state.feed = feed;
  (async () => {
    let delay = 2000;
    while (!feed.controller.signal.aborted) {
      try {
        for await (const [name] of api.stream("/api/v1/events", feed.controller.signal)) {
          if (name === "ready") {
            feed.live = true;
            delay = 2000;
            startTimer();
            requestRefresh(); // what changed while it was down
          } else if (name === "change") {
            requestRefresh();
          } else if (name === "end") {
            delay = 0; // the server recycles the stream (close_after): at once again
          }
        }
      } catch (failure) {
        if (failure.name === "AbortError") return;
        if (failure.status === 401) return;
      }
      if (feed.live) {
        feed.live = false;
        startTimer(); // poll at the fast pace until it is back
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(Math.max(delay * 2, 2000), 30000);
    }
  })();
}

function stopFeed() {
  if (state.feed) state.feed.controller.abort();
  state.feed = null;
}

export function can(permission) {
  return Boolean(state.me && state.me.permissions.includes(permission));
}

export function me() {
  return state.me;
}

function main() {
  return document.getElementById("main");
}

function stopRefresh() {
  if (state.timer) clearInterval(state.timer);
  if (state.queued) clearTimeout(state.queued);
  state.timer = null;
  state.queued = null;
  state.refresh = null;
  state.fed = false;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean);
  return { parts, params: new URLSearchParams(query) };
}

async function render() {
  stopRefresh();
  const route = ++state.route;
  const root = main();
  if (!api.session()) {
    showChrome(false);
    root.replaceChildren(signInPage());
    return;
  }
  if (!state.me) {
    try {
      state.me = await api.whoAmI();
    } catch (failure) {
      if (!api.session()) return; // signed out by the 401 handler
      root.replaceChildren(h("p", { class: "error", role: "alert" }, failure.message));
      return;
    }
  }
  showChrome(true);
  const { parts, params } = parseHash();
  const name = parts[0] || "overview";
  const page = PAGES[name];
  highlight(name);
  if (!page) {
    root.replaceChildren(h("h1", {}, "Not found"), h("p", {}, "No such page."));
    return;
  }
  root.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  let refresh = null;
  try {
    refresh = await page(root, { parts, params, isCurrent: () => route === state.route });
  } catch (failure) {
    if (route !== state.route) return;
    root.replaceChildren(h("p", { class: "error", role: "alert" }, failure.message || String(failure)));
    return;
  }
  if (refresh && route === state.route) {
    state.refresh = refresh;
    state.fed = FEED_PAGES.has(name);
    state.lastRefresh = Date.now();
    if (state.fed) startFeed();
    startTimer();
  }
}

function highlight(name) {
  for (const link of document.querySelectorAll("#nav a")) {
    const target = link.getAttribute("href").replace(/^#\/?/, "") || "overview";
    const current = target === name || (name === "job" && target === "jobs");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showChrome(signedIn) {
  document.getElementById("top").hidden = !signedIn;
  if (!signedIn) return;
  const who = state.me;
  const org = who.superAdmin ? "all organisations" : who.orgId ? `organisation ${who.orgId}` : "no organisation";
  document.getElementById("who").textContent = `${who.name || who.userId} · ${who.role || "no role"} · ${org}`;
  for (const item of document.querySelectorAll("[data-needs]")) item.hidden = !can(item.dataset.needs);
}

function signInPage() {
  const keyError = h("p", { class: "error", role: "alert" });
  const userError = h("p", { class: "error", role: "alert" });
  const keyForm = h(
    "form",
    { class: "card", "aria-labelledby": "key-title" },
    h("h2", { id: "key-title" }, "With an API key"),
    h("label", {}, "API key ", h("input", { name: "key", type: "password", autocomplete: "off", required: true, placeholder: "cvk_…" })),
    keyError,
    h("button", { type: "submit", class: "primary" }, "Sign in with the key"),
  );
  keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    keyError.textContent = "";
    try {
      state.me = await api.signInWithKey(keyForm.key.value);
      render();
    } catch (failure) {
      keyError.textContent = failure.message;
    }
  });
  const userForm = h(
    "form",
    { class: "card", "aria-labelledby": "user-title" },
    h("h2", { id: "user-title" }, "With a user account"),
    h("label", {}, "User id ", h("input", { name: "user", autocomplete: "username", required: true })),
    h("label", {}, "Password ", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    userError,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  userForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    userError.textContent = "";
    try {
      state.me = await api.signInAsUser(userForm.user.value, userForm.password.value);
      render();
    } catch (failure) {
      userError.textContent = failure.message;
    }
  });
  return h(
    "div",
    { class: "sign-in" },
    h("h1", {}, "Sign in to conveyor"),
    h("p", { class: "muted" }, "Your credential stays in this browser tab and is sent only to this server's API."),
    h("div", { class: "cards" }, userForm, keyForm),
  );
}

function signatureDialog(operation, problem) {
  const dialog = document.getElementById("signature");
  const form = document.getElementById("signature-form");
  document.getElementById("signature-why").textContent =
    `${operation} is a critical operation: sign it with your user id and password, and say what the signature means.`;
  document.getElementById("signature-error").textContent = problem || "";
  const current = api.session();
  form.password.value = "";
  if (current && current.kind === "user" && current.user) {
    form.user.value = current.user.userId;
    form.user.readOnly = true; // a signed-in user signs only as themselves
  } else {
    form.user.readOnly = false;
  }
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue !== "sign") return resolve(null);
        resolve({ user: form.user.value.trim(), password: form.password.value, meaning: form.meaning.value.trim() });
        form.password.value = "";
      },
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
    (form.user.readOnly ? form.password : form.user).focus();
  });
}

function signOut(message) {
  stopRefresh();
  stopFeed();
  state.me = null;
  api.saveSession(null);
  if (message) toast(message, "error");
  render();
}

api.configure({ signedOut: (message) => signOut(`Signed out: ${message}`), signature: signatureDialog });

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

window.addEventListener("hashchange", render);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.fed) requestRefresh(); // what changed while hidden
});
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  render();
});
