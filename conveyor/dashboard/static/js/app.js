// The dashboard's shell: sign-in, the caller's permissions, hash routes, live refresh.
// Each page is a function (in pages.js) that renders into <main> and may return a refresh
// function, called every few seconds while the page is shown.
import * as api from "./api.js";
import { h, toast } from "./ui.js";
import { PAGES } from "./pages.js";

const REFRESH_MS = 2000;

const state = {
  me: null,
  timer: null,
  route: 0,
};

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
  state.timer = null;
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
    let busy = false;
    state.timer = setInterval(async () => {
      if (busy || document.hidden) return;
      busy = true;
      try {
        await refresh();
      } catch (failure) {
        if (failure.status !== 401) console.warn("refresh failed", failure);
      } finally {
        busy = false;
      }
    }, REFRESH_MS);
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
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  render();
});
