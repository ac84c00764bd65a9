// The web client: rooms, a room's messages (history paged backward, live over the WebSocket,
// caught up after every reconnect), typing, delivered/read receipts, text sent through an
// offline queue keyed by client_id, and files uploaded by tus with progress, cancel and resume.
import { Session, SessionEnded } from "/app/session.js";
import { RoomSocket } from "/app/live.js";
import { TusUpload, UploadCancelled, unfinished } from "/app/tus.js";
import { placeholder } from "/app/blurhash.js";

const $ = (id) => document.getElementById(id);
const session = new Session();
const state = {
  rooms: [],
  roomId: null,
  socket: null,
  /** Messages of the open room by id, and the order they are shown in. */
  messages: new Map(),
  oldest: null,
  newest: 0,
  historyDone: false,
  loadingHistory: false,
  typing: new Map(),
  typingSent: 0,
  firstPaint: false,
};

// MARK: Elements

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB"];
  let value = bytes / 1024, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// One formatter for every message: `toLocaleTimeString` with options builds a new one per call
// (~3 ms each on a cold page: 150 ms for a page of history).
const clock = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });

function time(message) {
  const date = new Date(message.created_at || message.timestamp);
  return isNaN(date) ? "" : clock.format(date);
}

// MARK: Login

function showLogin(message = "") {
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("username").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const register = event.submitter?.value === "register";
  $("login-error").textContent = "";
  try {
    await session.login($("username").value.trim(), $("password").value, register);
    $("password").value = "";
    await enter();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

$("logout").addEventListener("click", () => session.logout());
session.onEnded = () => {
  state.socket?.close();
  state.socket = null;
  showLogin("Your login ended; log in again.");
};

async function enter() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("me").textContent = session.user?.username ?? "";
  const wanted = Number(new URLSearchParams(location.hash.slice(1)).get("room")) || Number(localStorage.getItem("mediagate.room")) || null;
  // The room's history and the room list load side by side: the first message is painted
  // as soon as the history arrives.
  const rooms = loadRooms();
  if (wanted) await openRoom(wanted);
  await rooms;
  if (!state.roomId && state.rooms.some((room) => room.is_member !== false)) {
    await openRoom(state.rooms.find((room) => room.is_member !== false).id);
  }
  offerUnfinishedUploads();
}

// MARK: Rooms

async function loadRooms() {
  try {
    state.rooms = await session.json("/api/rooms");
  } catch (error) {
    if (error instanceof SessionEnded) return;
    throw error;
  }
  const list = $("room-list");
  list.replaceChildren(...state.rooms.map((room) => {
    const member = room.is_member !== false;
    const unread = member && room.unread_count > 0 && room.id !== state.roomId ? room.unread_count : 0;
    return element("li", { class: room.id === state.roomId ? "current" : "" },
      element("button", {
        class: "room-button", "data-room": room.id, "aria-current": room.id === state.roomId ? "page" : null,
        onclick: () => member ? openRoom(room.id) : joinRoom(room.id),
      },
      element("span", { class: "room-name" }, room.name),
      member ? null : element("span", { class: "join" }, "Join"),
      unread ? element("span", { class: "unread", "aria-label": `${unread} unread` }, String(unread)) : null));
  }));
}

async function joinRoom(id) {
  await session.post(`/api/rooms/${id}/join`, {});
  await loadRooms();
  await openRoom(id);
}

$("new-room").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("new-room-name").value.trim();
  if (!name) return;
  const room = await session.post("/api/rooms", { name });
  $("new-room-name").value = "";
  await loadRooms();
  await openRoom(room.id);
});

$("back").addEventListener("click", (event) => {
  event.preventDefault();
  document.body.classList.remove("in-room");
});

setInterval(() => { if (session.access) loadRooms().catch(() => {}); }, 20_000);

// MARK: A room

async function openRoom(id) {
  if (state.roomId === id && state.socket) { document.body.classList.add("in-room"); return; }
  state.socket?.close();
  Object.assign(state, { roomId: id, messages: new Map(), oldest: null, newest: 0, historyDone: false, typing: new Map() });
  localStorage.setItem("mediagate.room", String(id));
  history.replaceState(null, "", `#room=${id}`);
  document.body.classList.add("in-room");
  const room = state.rooms.find((r) => r.id === id);
  $("room-name").textContent = room?.name ?? `Room ${id}`;
  $("messages").replaceChildren();
  renderTyping();
  try {
    await loadOlder();
  } catch (error) {
    $("room-name").textContent = "This room is not available";
    state.roomId = null;
    return;
  }
  state.socket = new RoomSocket(session, id, { onFrame: handleFrame, onState: connectionState });
  loadRooms().catch(() => {});
  flushOutbox();
}

function connectionState(status, again) {
  const labels = { connecting: "connecting…", reconnecting: "offline — reconnecting…", live: "", ended: "login ended" };
  $("connection").textContent = labels[status] ?? "";
  $("connection").className = `connection ${status}`;
  if (status === "live") {
    if (again) catchUp();
    flushOutbox();
    markRead();
  }
}

/** The page of messages before the oldest shown (the newest page first). */
async function loadOlder() {
  if (state.loadingHistory || state.historyDone) return;
  state.loadingHistory = true;
  const roomId = state.roomId;
  try {
    const query = new URLSearchParams({ room_id: roomId, limit: 50 });
    if (state.oldest) query.set("before", state.oldest);
    const page = await session.json(`/api/messages?${query}`);
    if (roomId !== state.roomId) return;
    if (!state.firstPaint) performance.mark("mediagate:history-received");
    if (page.length < 50) state.historyDone = true;
    const list = $("messages");
    const before = list.scrollHeight - list.scrollTop;
    // One insertion and one layout for the page: measuring per message cost 3 ms each.
    const batch = document.createDocumentFragment();
    for (const message of page.slice().reverse()) {
      const id = message.id ?? message.message_id;
      if (state.messages.has(id)) continue;
      const node = renderMessage({ ...message, id });
      state.messages.set(id, node);
      state.newest = Math.max(state.newest, id);
      batch.append(node);
    }
    list.prepend(batch);
    if (page.length) state.oldest = page[page.length - 1].id;
    else state.historyDone = true;
    list.scrollTop = list.scrollHeight - before;
    if (!state.firstPaint && page.length) {
      state.firstPaint = true;
      performance.mark("mediagate:first-message");
    }
  } finally {
    state.loadingHistory = false;
  }
}

$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 80) loadOlder().catch(() => {});
});

/** After a reconnect: every message newer than the newest shown, page by page. */
async function catchUp() {
  const roomId = state.roomId;
  let before = null;
  for (let pages = 0; pages < 20; pages++) {
    const query = new URLSearchParams({ room_id: roomId, limit: 100 });
    if (before) query.set("before", before);
    const page = await session.json(`/api/messages?${query}`);
    if (roomId !== state.roomId) return;
    const fresh = page.filter((message) => message.id > state.newest || !state.messages.has(message.id));
    for (const message of fresh.reverse()) addMessage(message);
    if (page.length < 100 || page[page.length - 1].id <= state.newest) break;
    before = page[page.length - 1].id;
  }
  markRead();
}

function handleFrame(frame) {
  switch (frame.type) {
    case "message":
      if (frame.room_id === state.roomId) {
        addMessage(frame);
        state.typing.delete(frame.sender);
        renderTyping();
        if (frame.sender !== session.user?.username) markRead();
      }
      break;
    case "ack":
      settle(frame.client_id, "sent");
      break;
    case "delivered":
      setStatus(frame.message_id, "delivered");
      break;
    case "read":
      if (frame.user !== session.user?.username) markOwnRead(frame.message_id, frame.user);
      break;
    case "typing_start":
      if (frame.sender !== session.user?.username) {
        clearTimeout(state.typing.get(frame.sender));
        state.typing.set(frame.sender, setTimeout(() => { state.typing.delete(frame.sender); renderTyping(); }, 7000));
        renderTyping();
      }
      break;
    case "typing_stop":
      clearTimeout(state.typing.get(frame.sender));
      state.typing.delete(frame.sender);
      renderTyping();
      break;
  }
}

function renderTyping() {
  const names = [...state.typing.keys()];
  $("typing").textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
}

// MARK: Messages

function addMessage(message) {
  const id = message.id ?? message.message_id;
  if (state.messages.has(id)) return;
  // A message of ours that was waiting in the outbox: its pending bubble becomes the real one.
  const pending = message.client_id ? document.querySelector(`[data-client-id="${CSS.escape(message.client_id)}"]`) : null;
  const node = renderMessage({ ...message, id });
  state.messages.set(id, node);
  state.newest = Math.max(state.newest, id);
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 120;
  if (pending) {
    pending.replaceWith(node);
  } else {
    // In id order: a message caught up after a reconnect can be older than one already shown.
    const later = [...list.children].find((child) => Number(child.dataset.id) > id);
    list.insertBefore(node, later ?? list.querySelector(".pending"));
  }
  if (atBottom || message.sender === session.user?.username) list.scrollTop = list.scrollHeight;
}

function renderMessage(message) {
  const mine = message.sender === session.user?.username;
  const text = message.content ?? message.message ?? "";
  const attachment = message.attachment;
  const showText = text && !(attachment && text === attachment.filename);
  return element("article", {
    class: `message${mine ? " mine" : ""}`, "data-id": message.id, "data-client-id": message.client_id,
    "aria-label": `${message.sender} at ${time(message)}`,
  },
  element("header", {}, element("span", { class: "sender" }, message.sender), " ", element("time", {}, time(message))),
  showText ? element("p", { class: "text" }, text) : null,
  attachment ? renderAttachment(attachment) : null,
  mine ? element("span", { class: "status", "data-status": "sent" }, "sent") : null);
}

/** Pictures and video posters as thumbnails (the BlurHash first), playable media, or a card. */
function renderAttachment(attachment) {
  const kind = attachment.type;
  const name = attachment.filename || "file";
  const url = attachment.url;
  const thumb = attachment.thumbnailUrl;
  if ((kind === "image" || kind === "video") && thumb) {
    const width = attachment.width || 320, height = attachment.height || 240;
    const scale = Math.min(1, 320 / width, 320 / height);
    const figure = element("figure", { class: `media ${kind}` });
    figure.style.aspectRatio = `${width} / ${height}`;
    figure.style.width = `${Math.round(width * scale)}px`;
    const blur = placeholder(attachment.blurhash);
    if (blur) figure.append(blur);
    const sized = (w) => `${thumb}${thumb.includes("?") ? "&" : "?"}w=${w}`;
    if (kind === "video") {
      const video = element("video", { controls: true, preload: "none", poster: sized(640), src: url, "aria-label": name });
      figure.append(video);
    } else {
      const image = element("img", {
        src: sized(320), srcset: `${sized(320)} 320w, ${sized(640)} 640w, ${sized(1280)} 1280w`,
        sizes: "(max-width: 600px) 80vw, 320px", alt: name, loading: "lazy", decoding: "async",
        width: Math.round(width * scale), height: Math.round(height * scale),
      });
      image.addEventListener("load", () => figure.classList.add("loaded"));
      const open = element("button", { class: "open", "aria-label": `Open ${name} full size`, onclick: () => view(url, name) }, image);
      figure.append(open);
    }
    return figure;
  }
  if (kind === "video") return element("video", { class: "media-player", controls: true, preload: "metadata", src: url, "aria-label": name });
  if (kind === "audio") return element("audio", { class: "media-player", controls: true, preload: "metadata", src: url, "aria-label": name });
  return element("a", { class: "file-card", href: url, download: name },
    element("span", { class: "file-name" }, name),
    element("span", { class: "file-meta" }, `${attachment.mimeType || attachment.mime_type || "file"} · ${formatBytes(attachment.size || 0)}`));
}

function view(url, name) {
  $("viewer-image").src = url;
  $("viewer-image").alt = name;
  $("viewer").showModal();
}

function setStatus(messageId, status) {
  const node = state.messages.get(messageId);
  const badge = node?.querySelector(".status");
  if (!badge) return;
  const order = ["sending", "sent", "delivered", "read"];
  if (order.indexOf(status) < order.indexOf(badge.dataset.status)) return;
  badge.dataset.status = status;
  badge.textContent = status;
}

function markOwnRead(upTo, reader) {
  for (const [id, node] of state.messages) {
    if (id <= upTo && node.classList.contains("mine")) {
      setStatus(id, "read");
      node.querySelector(".status").title = `read by ${reader}`;
    }
  }
}

let lastRead = 0;
function markRead() {
  if (document.hidden || !state.newest || state.newest <= lastRead) return;
  if (state.socket?.send({ type: "read", message_id: state.newest })) lastRead = state.newest;
}
document.addEventListener("visibilitychange", markRead);

// MARK: Sending, with an offline queue

const OUTBOX = "mediagate.outbox";
const outbox = () => JSON.parse(localStorage.getItem(OUTBOX) || "[]");
const saveOutbox = (items) => localStorage.setItem(OUTBOX, JSON.stringify(items));

function queue(item) {
  saveOutbox([...outbox(), item]);
  if (item.room_id === state.roomId) showPending(item);
  flushOutbox();
}

function showPending(item) {
  if (document.querySelector(`[data-client-id="${CSS.escape(item.client_id)}"]`)) return;
  const node = element("article", { class: "message mine pending", "data-client-id": item.client_id },
    element("header", {}, element("span", { class: "sender" }, session.user?.username ?? "")),
    element("p", { class: "text" }, item.content),
    element("span", { class: "status", "data-status": "sending" }, "sending…"));
  $("messages").append(node);
  $("messages").scrollTop = $("messages").scrollHeight;
}

let flushing = false;
/** Sends what waits, oldest first; the server knows each by its client_id, so a resend after
 * a lost answer is never a second message. */
async function flushOutbox() {
  if (flushing) return;
  flushing = true;
  try {
    for (const item of outbox()) {
      try {
        const message = await session.post("/api/messages", item);
        saveOutbox(outbox().filter((other) => other.client_id !== item.client_id));
        if (message.room_id === state.roomId) addMessage(message);
      } catch (error) {
        if (error.status && error.status < 500 && error.status !== 429) {
          saveOutbox(outbox().filter((other) => other.client_id !== item.client_id)); // refused: never sendable
          document.querySelector(`[data-client-id="${CSS.escape(item.client_id)}"] .status`)?.replaceChildren(`not sent: ${error.message}`);
          continue;
        }
        break; // offline: try again on the next reconnect, `online` event or tick
      }
    }
  } finally {
    flushing = false;
  }
}
window.addEventListener("online", flushOutbox);
setInterval(() => { if (outbox().length) flushOutbox(); }, 5_000);

function settle(clientId) {
  document.querySelector(`[data-client-id="${CSS.escape(clientId ?? "")}"].pending .status`)?.replaceChildren("sent");
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const content = $("text").value.trim();
  if (!content || !state.roomId) return;
  $("text").value = "";
  state.socket?.send({ type: "typing_stop" });
  state.typingSent = 0;
  queue({ room_id: state.roomId, content, client_id: `web-${crypto.randomUUID()}` });
});

$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

let typingTimer = null;
$("text").addEventListener("input", () => {
  if (Date.now() - state.typingSent > 3000 && $("text").value) {
    if (state.socket?.send({ type: "typing_start" })) state.typingSent = Date.now();
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => {
    state.socket?.send({ type: "typing_stop" });
    state.typingSent = 0;
  }, 2500);
});

// MARK: Uploads

$("file-input").addEventListener("change", () => {
  uploadAll([...$("file-input").files]);
  $("file-input").value = "";
});

const room = $("room");
room.addEventListener("dragover", (event) => { event.preventDefault(); $("drop").hidden = false; });
room.addEventListener("dragleave", (event) => { if (!room.contains(event.relatedTarget)) $("drop").hidden = true; });
room.addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").hidden = true;
  uploadAll([...event.dataTransfer.files]);
});
document.addEventListener("paste", (event) => {
  const files = [...(event.clipboardData?.files ?? [])];
  if (files.length) { event.preventDefault(); uploadAll(files); }
});

function uploadAll(files) {
  if (!state.roomId) return;
  for (const file of files) uploadOne(file, state.roomId);
}

async function uploadOne(file, roomId) {
  const bar = element("progress", { max: file.size || 1, value: 0, "aria-label": `Uploading ${file.name}` });
  const speed = element("span", { class: "speed" }, "");
  const upload = new TusUpload(file, session, { roomId });
  const cancel = element("button", { class: "link", onclick: () => upload.cancel() }, "Cancel");
  const item = element("li", { class: "upload", "data-name": file.name },
    element("span", { class: "upload-name" }, file.name), bar, speed, cancel);
  $("uploads").append(item);
  document.querySelector(`.resume-hint[data-name="${CSS.escape(file.name)}"]`)?.remove();
  const started = performance.now();
  upload.onProgress = (bytes, total) => {
    bar.value = bytes;
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0.2 ? upload.sent / seconds : 0;
    speed.textContent = `${formatBytes(bytes)} of ${formatBytes(total)}${rate ? ` · ${formatBytes(rate)}/s` : ""}`;
  };
  try {
    const url = await upload.start();
    speed.textContent = "processing…";
    cancel.remove();
    let result;
    for (let attempt = 0; attempt < 40; attempt++) {
      result = await session.json(`${url}?wait=15`);
      if (result.status === "ready") break;
    }
    if (result?.status !== "ready") throw new Error("the server is still processing it");
    queue({ room_id: roomId, content: file.name, client_id: `web-upload-${url.split("/").pop()}`, attachment: { file_id: result.file_id } });
    item.remove();
  } catch (error) {
    cancel.remove();
    if (error instanceof UploadCancelled) { item.remove(); return; }
    speed.textContent = `failed: ${error.message}`;
    item.classList.add("failed");
  }
}

/** Uploads a reload interrupted: their bytes are on the server; picking the file again resumes it. */
function offerUnfinishedUploads() {
  for (const saved of unfinished()) {
    if (saved.roomId !== state.roomId || document.querySelector(`.upload[data-name="${CSS.escape(saved.name)}"]`)) continue;
    $("uploads").append(element("li", { class: "upload resume-hint", "data-name": saved.name },
      element("span", { class: "upload-name" }, saved.name),
      element("span", { class: "speed" }, `interrupted at some of ${formatBytes(saved.size)}: pick it again to resume`)));
  }
}

// MARK: Start

(async () => {
  if (!session.hasLogin) return showLogin();
  try {
    await session.resume();
    performance.mark("mediagate:logged-in");
    await enter();
  } catch {
    showLogin();
  }
})();
