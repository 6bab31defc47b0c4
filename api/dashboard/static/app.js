// The dashboard's shell: sign-in with an API token, a hash router over the pages, and polling.
// Every figure comes from the authorised /api/v1 routes with the user's token; the server
// decides what the user may see and do (a hidden button is a courtesy, not the control).

import { api, ApiError, clearToken, getToken, Offline, setToken } from "./api.js";
import { pages as basePages } from "./pages.js";
import { sharingPages } from "./sharing.js";
import { h, notify, replace } from "./ui.js";

const POLL_MS = 3000;
const pages = { ...basePages, ...sharingPages };

const $ = (id) => document.getElementById(id);
const ctx = { me: null, route: null, data: null, refresh, rerender };
let generation = 0; // bumped on navigation and sign-out: late answers of an old page are dropped
let timer = null;
let running = null;
let again = false;
let paused = false;
let offline = false;

function parseRoute() {
  const [path, query] = window.location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  if (parts[0] === "jobs" && parts[1]) return { page: "job", id: parts[1], params };
  if (parts[0] === "artifacts" && parts[1]) return { page: "artifact", id: parts[1], params };
  const detail = ["job", "artifact"];
  if (parts[0] && !detail.includes(parts[0]) && parts[0] in pages) return { page: parts[0], params };
  return { page: "pool", params };
}

function route() {
  if (!ctx.me) return;
  generation += 1;
  ctx.route = parseRoute();
  ctx.data = null;
  const page = pages[ctx.route.page];
  page.enter?.(ctx.route.params);
  document.title = `${page.title} · commonpool`;
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.dataset.page === ctx.route.page
      || (link.dataset.page === "jobs" && ctx.route.page === "job")
      || (link.dataset.page === "artifacts" && ctx.route.page === "artifact");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  replace($("view"), h("p", { class: "loading" }, "Loading…"));
  refresh();
}

async function refresh() {
  if (!ctx.me) return;
  if (running) {
    again = true;
    return running;
  }
  const gen = generation;
  const page = pages[ctx.route.page];
  running = (async () => {
    try {
      const data = await page.load(ctx);
      if (gen !== generation) return;
      ctx.data = data;
      rerender();
      offline = false;
      $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`
        + (paused ? " · updates paused" : ` · every ${POLL_MS / 1000} s`);
    } catch (err) {
      if (gen !== generation) return;
      failed(err);
    }
  })();
  try {
    await running;
  } finally {
    running = null;
  }
  if (again) {
    again = false;
    return refresh();
  }
  schedule();
}

function failed(err) {
  if (err instanceof ApiError && err.status === 401) {
    signOut(`Signed out: the server refused the token (${err.message}).`);
    return;
  }
  if (err instanceof Offline) {
    if (!offline) notify("Cannot reach the server; retrying.", "error");
    offline = true;
    $("updated").textContent = `Server unreachable since ${new Date().toLocaleTimeString()}`;
    return;
  }
  if (ctx.data === null) {
    const notFound = err instanceof ApiError && err.status === 404;
    const what = { job: "job", artifact: "artifact" }[ctx.route.page];
    replace($("view"), h("h1", {}, notFound ? "Not found" : "Could not load this page"),
      h("p", { class: "error" }, notFound && what
        ? `No ${what} ${ctx.route.id} that you may see.` : err.message),
      h("p", {}, h("a", { href: "#/pool" }, "Back to the pool")));
  } else {
    notify(err.message, "error");
  }
}

function rerender() {
  if (ctx.data === null) return;
  replace($("view"), pages[ctx.route.page].render(ctx.data, ctx));
}

function schedule() {
  clearTimeout(timer);
  if (!ctx.me) return;
  timer = setTimeout(() => {
    if (paused || document.hidden) schedule();
    else refresh();
  }, POLL_MS);
}

async function signIn(token) {
  const me = await api("/whoami", { token });
  if (me.kind !== "user") {
    throw new Error(`this is a ${me.kind} credential, not a user's API token`);
  }
  setToken(token);
  ctx.me = me;
  $("who").textContent = `${me.subject}${me.is_admin ? " (admin)" : ""}`;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("session").hidden = false;
  route();
}

function signOut(message) {
  clearToken();
  clearTimeout(timer);
  generation += 1;
  ctx.me = null;
  ctx.data = null;
  $("nav").hidden = true;
  $("session").hidden = true;
  $("updated").textContent = "";
  replace($("view"));
  showLogin(message);
}

function showLogin(message = "") {
  document.title = "Sign in · commonpool";
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
}

function wire() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    try {
      await signIn(token);
    } catch (err) {
      const refused = err instanceof ApiError && err.status === 401;
      showLogin(refused ? "That token was refused (unknown, expired or revoked)." : err.message);
    }
  });
  $("logout").addEventListener("click", () => signOut("Signed out."));
  $("pause").addEventListener("click", (event) => {
    paused = !paused;
    event.currentTarget.setAttribute("aria-pressed", String(paused));
    event.currentTarget.textContent = paused ? "Resume updates" : "Pause updates";
    notify(paused ? "Live updates paused." : "Live updates resumed.");
    if (!paused) refresh();
  });
  window.addEventListener("hashchange", () => {
    route();
    $("main").focus({ preventScroll: true });
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !paused && ctx.me) refresh();
  });
}

async function start() {
  wire();
  const token = getToken();
  if (!token) {
    showLogin();
    return;
  }
  try {
    await signIn(token);
  } catch (err) {
    signOut(err instanceof ApiError && err.status === 401
      ? "Your saved token was refused; sign in again." : err.message);
  }
}

start();
