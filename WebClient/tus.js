// tus 1.0 uploads from the browser: creation, then PATCHes of `chunkSize` bytes, each sent
// with XMLHttpRequest for its upload progress. The upload's URL is kept in localStorage under
// the file's fingerprint (name, size, modification time), so the same file picked again after
// a reload or a lost network goes on from the server's offset instead of from zero.

const PREFIX = "mediagate.tus:";

export function fingerprint(file, roomId) {
  return `${PREFIX}${roomId}:${file.name}:${file.size}:${file.lastModified}`;
}

/** Uploads started here and not finished, for offering to resume them after a reload. */
export function unfinished() {
  const found = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (!key.startsWith(PREFIX)) continue;
    try { found.push({ key, ...JSON.parse(localStorage.getItem(key)) }); } catch { localStorage.removeItem(key); }
  }
  return found;
}

export class TusUpload {
  constructor(file, session, { roomId, chunkSize = 4 << 20, onProgress = () => {} }) {
    this.file = file;
    this.session = session;
    this.roomId = roomId;
    this.chunkSize = chunkSize;
    this.onProgress = onProgress;
    this.key = fingerprint(file, roomId);
    this.request = null;
    this.cancelled = false;
    /** Bytes this page sent (resumed bytes excluded). */
    this.sent = 0;
  }

  /** Uploads the file; returns the upload's URL. */
  async start() {
    let url = this.saved()?.url;
    let offset = null;
    if (url) offset = await this.offset(url);
    if (offset === null) {
      url = await this.create();
      offset = 0;
    }
    this.url = url;
    this.resumedAt = offset;
    let failures = 0;
    while (offset < this.file.size) {
      if (this.cancelled) throw new UploadCancelled();
      try {
        offset = await this.patch(url, offset);
        failures = 0;
      } catch (error) {
        if (this.cancelled || error instanceof UploadCancelled) throw new UploadCancelled();
        if (error.status && error.status < 500 && ![409, 423, 429, 460].includes(error.status)) throw error;
        if (++failures > 12) throw error;
        await sleep(Math.min(15_000, 400 * 2 ** failures) * (0.5 + Math.random() / 2));
        const current = await this.offset(url).catch(() => null);
        if (current === null) throw new Error("the server no longer has this upload");
        offset = current;
      }
    }
    localStorage.removeItem(this.key);
    return url;
  }

  saved() {
    try { return JSON.parse(localStorage.getItem(this.key)); } catch { return null; }
  }

  async create() {
    const metadata = { filename: this.file.name, room_id: String(this.roomId) };
    if (this.file.type) metadata.filetype = this.file.type;
    const encoded = Object.entries(metadata).map(([k, v]) => `${k} ${btoa(String.fromCharCode(...new TextEncoder().encode(v)))}`).join(",");
    const response = await this.session.fetch("/api/uploads", {
      method: "POST",
      headers: { "Tus-Resumable": "1.0.0", "Upload-Length": String(this.file.size), "Upload-Metadata": encoded },
    });
    if (response.status !== 201) throw await failure(response);
    const url = new URL(response.headers.get("Location"), location.href).pathname;
    localStorage.setItem(this.key, JSON.stringify({ url, name: this.file.name, size: this.file.size, roomId: this.roomId }));
    return url;
  }

  /** The server's offset, or null when it no longer has the upload. */
  async offset(url) {
    const response = await this.session.fetch(url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" } });
    if (response.status === 404 || response.status === 410) { localStorage.removeItem(this.key); return null; }
    if (!response.ok) throw await failure(response);
    return Number(response.headers.get("Upload-Offset"));
  }

  async patch(url, offset) {
    const end = Math.min(this.file.size, offset + this.chunkSize);
    const token = await this.session.token();
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      this.request = request;
      request.open("PATCH", url);
      request.setRequestHeader("Authorization", `Bearer ${token}`);
      request.setRequestHeader("Tus-Resumable", "1.0.0");
      request.setRequestHeader("Upload-Offset", String(offset));
      request.setRequestHeader("Content-Type", "application/offset+octet-stream");
      let reported = 0;
      request.upload.onprogress = (event) => {
        this.sent += event.loaded - reported;
        reported = event.loaded;
        this.onProgress(offset + event.loaded, this.file.size);
      };
      request.onload = () => {
        if (request.status === 204) {
          const next = Number(request.getResponseHeader("Upload-Offset"));
          this.onProgress(next, this.file.size);
          resolve(next);
        } else {
          reject(Object.assign(new Error(`the server answered ${request.status}`), { status: request.status }));
        }
      };
      request.onerror = () => reject(new Error("the network failed"));
      request.onabort = () => reject(new UploadCancelled());
      request.send(this.file.slice(offset, end));
    });
  }

  /** Stops the upload and deletes what the server has of it. */
  async cancel() {
    this.cancelled = true;
    this.request?.abort();
    localStorage.removeItem(this.key);
    if (this.url) await this.session.fetch(this.url, { method: "DELETE", headers: { "Tus-Resumable": "1.0.0" } }).catch(() => {});
  }
}

export class UploadCancelled extends Error {
  constructor() { super("cancelled"); }
}

async function failure(response) {
  const body = await response.json().catch(() => ({}));
  return Object.assign(new Error(body.error?.message || `the server answered ${response.status}`), { status: response.status });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
