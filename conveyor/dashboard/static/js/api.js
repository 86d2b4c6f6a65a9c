// The REST API, called with the signed-in caller's own credential (kept in sessionStorage: it
// goes when the tab closes). Errors of every endpoint family become one ApiFailure; a critical
// operation that asks for an e-signature (HTTP 428 SIGNATURE_REQUIRED) prompts for it and is
// sent again with the X-Signature-* headers.

const STORE = "conveyor.session";

export class ApiFailure extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) || "null");
  } catch {
    return null;
  }
}

export function saveSession(value) {
  if (value) sessionStorage.setItem(STORE, JSON.stringify(value));
  else sessionStorage.removeItem(STORE);
}

let onSignedOut = () => {};
let askSignature = async () => null;

export function configure({ signedOut, signature }) {
  onSignedOut = signedOut;
  askSignature = signature;
}

function failureOf(status, body) {
  if (body && typeof body === "object") {
    if (body.success === false) {
      const details = body.details || {};
      return new ApiFailure(status, details.code || "ERROR", body.error || "request failed", details.field);
    }
    if (body.error && typeof body.error === "object") {
      const e = body.error;
      const reason = (e.details && (e.details.reason || e.details.code)) || e.code;
      return new ApiFailure(status, reason, e.message || "request failed", e.field);
    }
    if (typeof body.detail === "string") return new ApiFailure(status, "ERROR", body.detail);
  }
  return new ApiFailure(status, "HTTP_" + status, `the server answered ${status}`);
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, v);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function send(method, path, { query, body, headers = {}, raw = false, signingIn = false } = {}) {
  const current = session();
  const all = { Accept: "application/json", ...headers };
  if (current) all.Authorization = `Bearer ${current.token}`;
  if (body !== undefined) all["Content-Type"] = "application/json";
  const response = await fetch(withQuery(path, query), {
    method,
    headers: all,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (raw && response.ok) return response;
  let parsed = null;
  const text = await response.text();
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const failure = failureOf(response.status, parsed);
    if (response.status === 401 && current && !signingIn) {
      saveSession(null);
      onSignedOut(failure.message);
    }
    throw failure;
  }
  return parsed;
}

export function get(path, query) {
  return send("GET", path, { query });
}

// Server-sent events over fetch (EventSource cannot send the Authorization header): yields
// [event, data] pairs until the server ends the stream or `signal` aborts it.
export async function* stream(path, signal) {
  const current = session();
  const headers = { Accept: "text/event-stream" };
  if (current) headers.Authorization = `Bearer ${current.token}`;
  const response = await fetch(path, { headers, signal, credentials: "omit", cache: "no-store" });
  if (!response.ok || !response.body) throw failureOf(response.status, null);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) yield [name, JSON.parse(data)];
    }
  }
}

// A state-changing call; `operation` names it for the e-signature prompt.
export async function act(method, path, { body, query, operation } = {}) {
  let signature = null;
  let problem = null;
  for (;;) {
    const headers = {};
    if (signature) {
      headers["X-Signature-User"] = signature.user;
      headers["X-Signature-Password"] = signature.password;
      headers["X-Signature-Meaning"] = signature.meaning;
    }
    try {
      return await send(method, path, { query, body, headers });
    } catch (failure) {
      const wanted = failure.code === "SIGNATURE_REQUIRED" || (signature && failure.code === "SIGNATURE_INVALID");
      if (!wanted) throw failure;
      problem = failure.code === "SIGNATURE_INVALID" ? failure.message : null;
      signature = await askSignature(operation || `${method} ${path}`, problem);
      if (!signature) throw new ApiFailure(0, "SIGNATURE_CANCELLED", "not signed: nothing was changed");
    }
  }
}

// A file the API streams (an export, a result): fetched with the credential, saved by the browser.
export async function download(path, query, filename) {
  const response = await send("GET", path, { query, raw: true, headers: { Accept: "*/*" } });
  const blob = await response.blob();
  saveBlob(blob, filename);
}

export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Sign-in: an API key is checked by asking who it is; a user id and password get a token.
export async function signInWithKey(key) {
  saveSession({ kind: "apiKey", token: key.trim() });
  try {
    return await whoAmI(true);
  } catch (failure) {
    saveSession(null);
    throw failure;
  }
}

export async function signInAsUser(userId, password) {
  let answer;
  try {
    answer = await send("POST", "/api/v1/auth/token", { body: { userId, password } });
  } catch (failure) {
    if (failure.status === 404 || failure.status === 405) {
      throw new ApiFailure(failure.status, "NO_USERS", "this server has no user accounts: sign in with an API key");
    }
    throw failure;
  }
  const data = answer.data;
  saveSession({ kind: "user", token: data.accessToken, expiresAt: data.expiresAt, user: data.user });
  try {
    return await whoAmI(true);
  } catch (failure) {
    saveSession(null);
    throw failure;
  }
}

export async function whoAmI(signingIn = false) {
  const me = (await send("GET", "/api/v1/me", { signingIn })).data;
  const current = session();
  if (current) saveSession({ ...current, me });
  return me;
}
