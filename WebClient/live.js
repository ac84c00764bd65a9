// A room's WebSocket: reconnects with backoff (jittered, 0.5 s doubling to 10 s) whenever it
// drops, and tells the app each time it is back so that it can catch up on what it missed.

export class RoomSocket {
  constructor(session, roomId, { onFrame, onState }) {
    this.session = session;
    this.roomId = roomId;
    this.onFrame = onFrame;
    this.onState = onState;
    this.attempt = 0;
    this.closed = false;
    this.socket = null;
    this.connect();
  }

  async connect() {
    if (this.closed) return;
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    let token;
    try { token = await this.session.token(); } catch { return this.retry(); }
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws/chat/${this.roomId}?token=${encodeURIComponent(token)}`);
    this.socket = socket;
    socket.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame.type === "connected") {
        const again = this.attempt > 0 || this.wasOpen;
        this.attempt = 0;
        this.wasOpen = true;
        this.onState("live", again);
      }
      this.onFrame(frame);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket || this.closed) return;
      this.socket = null;
      if (event.code === 4001) { this.onState("ended"); return; }
      this.retry();
    };
  }

  retry() {
    if (this.closed) return;
    this.onState("reconnecting");
    const ceiling = Math.min(10_000, 500 * 2 ** this.attempt++);
    setTimeout(() => this.connect(), ceiling / 2 + Math.random() * ceiling / 2);
  }

  send(frame) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  close() {
    this.closed = true;
    this.socket?.close(1000);
  }
}
