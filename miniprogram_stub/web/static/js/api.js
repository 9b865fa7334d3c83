// medpay's API as the mini-program calls it, through the stub's same-origin proxy (/_web/api),
// and the sandbox's phone-side endpoints (same origin: the stub serves these pages).

const KEY = "medpay.h5.session";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || (body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "";
    this.body = body;
  }
}

let settings = null;
export async function config() {
  settings = settings || (await json(await fetch("/_web/config")));
  return settings;
}

// The phone's session: the channel and sandbox user it logged in as, and medpay's tokens.
export const session = {
  get() {
    try { return JSON.parse(localStorage.getItem(KEY)) || null; } catch { return null; }
  },
  set(value) { localStorage.setItem(KEY, JSON.stringify(value)); },
  clear() { localStorage.removeItem(KEY); },
};

async function json(response) {
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { detail: text }; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export function idempotencyKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

let refreshing = null;
// Refresh one request at a time: a spent refresh token presented twice signs the login out.
async function refresh() {
  refreshing = refreshing || (async () => {
    const now = session.get();
    const fresh = await json(await fetch("/_web/api/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: now.refresh_token }),
    }));
    session.set({ ...now, access_token: fresh.access_token, refresh_token: fresh.refresh_token });
  })().finally(() => { refreshing = null; });
  return refreshing;
}

// A call of medpay's patient API: `path` after /api/v1. Options: body, idempotent (a key), key.
export async function api(method, path, options = {}) {
  const send = () => {
    const headers = {};
    const now = session.get();
    if (now && now.access_token) headers.Authorization = `Bearer ${now.access_token}`;
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (options.key) headers["Idempotency-Key"] = options.key;
    return fetch(`/_web/api${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
  };
  let response = await send();
  if (response.status === 401 && session.get() && session.get().refresh_token && !path.startsWith("/auth/")) {
    try {
      await refresh();
    } catch (error) {
      session.clear();
      location.hash = "#/login";
      throw error;
    }
    response = await send();
  }
  return json(response);
}

// The hospital's side (terminal page): the stub holds the demo partners' secrets.
export async function hospital(client, method, path, options = {}) {
  const headers = {};
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.key) headers["Idempotency-Key"] = options.key;
  return json(await fetch(`/_web/hospital/${client}${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  }));
}

// The sandbox's own endpoints (what the phone's OS and the channels' apps do).
export async function sandbox(method, path, body) {
  return json(await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  }));
}

// wx.login() / my.getAuthCode(), then medpay's login.
export async function login(channel, user) {
  const cfg = await config();
  const code = channel === "wechat"
    ? (await sandbox("POST", "/wechat/_sandbox/login", { appid: cfg.wechat_appid, user })).code
    : (await sandbox("POST", "/alipay/_sandbox/login", { app_id: cfg.alipay_app_id, user })).auth_code;
  const tokens = await api("POST", "/auth/login", { body: { channel, code } });
  session.set({ channel, user, access_token: tokens.access_token, refresh_token: tokens.refresh_token });
  return tokens;
}

// wx.requestSubscribeMessage() / my.requestSubscribeMessage() answered with `decisions`, then
// reported to medpay, as the mini-program reports each dialog once.
export async function subscribe(decisions) {
  const cfg = await config();
  const { channel, user } = session.get();
  const shown = channel === "wechat"
    ? await sandbox("POST", "/wechat/_sandbox/subscribe", { appid: cfg.wechat_appid, user, decisions })
    : await sandbox("POST", "/alipay/_sandbox/subscribe", { app_id: cfg.alipay_app_id, user, decisions });
  const results = Object.fromEntries(Object.entries(shown).filter(([k]) => k !== "errMsg"));
  return api("POST", "/notifications/subscriptions", { body: { results } });
}

export const qrPicture = (payload) => `/_web/qr.svg?text=${encodeURIComponent(payload)}`;
