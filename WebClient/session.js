// The login: the access token lives in memory only; the refresh token in localStorage, so a
// reload keeps the login without ever writing the short-lived token anywhere. The access token
// is renewed a minute before it expires, and by one request at a time however many need it.

const REFRESH_KEY = "mediagate.refresh";

export class Session {
  constructor() {
    this.access = null;
    this.accessExpires = 0;
    this.refreshToken = localStorage.getItem(REFRESH_KEY);
    /** `{id, username}`, from the access token's claims (no request needed). */
    this.user = null;
    this.renewal = null;
    this.timer = null;
    this.onEnded = () => {};
  }

  get hasLogin() { return Boolean(this.refreshToken); }

  async login(username, password, register) {
    const response = await fetch(register ? "/api/auth/register" : "/api/auth/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error?.message || `the server answered ${response.status}`);
    this.accept(body);
  }

  async resume() {
    await this.token();
  }

  accept(tokens) {
    this.access = tokens.access_token;
    const claims = payload(tokens.access_token);
    this.accessExpires = claims?.exp ? claims.exp * 1000 : Date.now() + 60_000;
    if (claims?.name) this.user = { id: Number(claims.sub), username: claims.name };
    if (tokens.refresh_token) {
      this.refreshToken = tokens.refresh_token;
      localStorage.setItem(REFRESH_KEY, tokens.refresh_token);
    }
    clearTimeout(this.timer);
    const lead = Math.max(5_000, this.accessExpires - Date.now() - 60_000);
    this.timer = setTimeout(() => this.renew().catch(() => {}), lead);
  }

  /** A valid access token, renewed first when it is about to expire. */
  async token() {
    if (this.access && this.accessExpires - Date.now() > 30_000) return this.access;
    await this.renew();
    return this.access;
  }

  /** One renewal at a time: everyone who asks meanwhile waits for the same one. */
  renew() {
    if (!this.renewal) {
      this.renewal = (async () => {
        if (!this.refreshToken) throw new SessionEnded();
        const response = await fetch("/api/auth/refresh", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: this.refreshToken }),
        });
        if (response.status === 401) { this.end(); throw new SessionEnded(); }
        if (!response.ok) throw new Error(`renewing the login answered ${response.status}`);
        this.accept(await response.json());
      })().finally(() => { this.renewal = null; });
    }
    return this.renewal;
  }

  /** `fetch` with the access token; a 401 renews it once and tries again. */
  async fetch(path, options = {}) {
    for (let attempt = 0; ; attempt++) {
      const headers = new Headers(options.headers || {});
      headers.set("Authorization", `Bearer ${await this.token()}`);
      const response = await fetch(path, { ...options, headers });
      if (response.status !== 401 || attempt > 0) return response;
      this.access = null;
    }
  }

  async json(path, options = {}) {
    const response = await this.fetch(path, options);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw Object.assign(new Error(body.error?.message || `${path} answered ${response.status}`), { status: response.status });
    return body;
  }

  post(path, object) {
    return this.json(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(object) });
  }

  async logout() {
    const refresh = this.refreshToken;
    try { await this.fetch("/api/auth/logout", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh_token: refresh }) }); } catch {}
    this.end();
  }

  end() {
    clearTimeout(this.timer);
    this.access = null;
    this.refreshToken = null;
    localStorage.removeItem(REFRESH_KEY);
    this.onEnded();
  }
}

export class SessionEnded extends Error {
  constructor() { super("the login ended; log in again"); }
}

/** A JWT's claims (`exp`, `sub`, `name`), or null. Read for timing and display only: the
 * server checks the signature. */
function payload(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return null;
  }
}
