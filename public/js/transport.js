// The connection to pichat: one WebSocket speaking `pichat.v1`, reconnected with
// jittered exponential backoff, resumed with `since` (and the room's `epoch`, the
// identity of the history those ids belong to) so nothing is missed.
//
// Events (a Transport is an EventTarget):
//   "state"   detail {state, delay, attempt}; state is one of
//             "idle", "connecting", "open", "waiting", "stopped"
//   "frame"   detail: the parsed JSON object of one server frame
//   "close"   detail {code, reason, wasClean}

export const PROTOCOL = "pichat.v1";
/** The longest epoch the server accepts back in a `join`. */
export const MAX_EPOCH_LENGTH = 64;

/** The epoch a welcome carries, or null (an older server, or not a usable one). */
export function welcomeEpoch(frame) {
  const epoch = frame.epoch;
  return typeof epoch === "string" && epoch !== "" && epoch.length <= MAX_EPOCH_LENGTH ? epoch : null;
}
/** Close codes that end the session: kicked (4001) and banned (4003). No retry. */
export const FINAL_CODES = new Set([4001, 4003]);

/** The WebSocket URL for the page at `location`: same host, `wss:` under https. */
export function socketUrl(location) {
  const url = new URL("./", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = "";
  url.hash = "";
  return url.href;
}

/** Backoff delay in ms for the n-th retry (0-based): exponential, capped, jittered. */
export function backoffDelay(attempt, { initial = 500, max = 15000, factor = 2, random = Math.random } = {}) {
  const ceiling = Math.min(max, initial * factor ** attempt);
  // "Equal jitter": half fixed, half random, so a restarted daemon is not hit by
  // every client at the same instant but nobody retries immediately either.
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

export class Transport extends EventTarget {
  /**
   * @param {string} url  ws: or wss: URL
   * @param {(since: number|null, epoch: string|null) => object} hello  builds the `join`
   *   frame sent on every open (epoch is null whenever since is)
   */
  constructor(url, hello, options = {}) {
    super();
    this.url = url;
    this.hello = hello;
    this.options = options;
    this.socket = null;
    this.state = "idle";
    this.attempt = 0;
    this.timer = null;
    this.retryAt = 0;
    // The resume cursor: the highest message id this client has seen, or null
    // before any. `joined` tells a first join (since null: the recent history)
    // from a rejoin of a room that had no messages yet (since 0: all of them).
    this.cursor = null;
    this.joined = false;
    // The epoch of the last welcome: the history the cursor's ids belong to.
    this.epoch = null;
    // What the current connection's `join` asked for: {since, epoch}.
    this.asked = null;
    // True when the last attempt ended without ever opening: the server cannot be
    // reached (the Pi is off, the network gone), not just a dropped connection.
    this.unreachable = false;
  }

  /** Connect (or reconnect) until stop() is called. */
  start() {
    if (this.state === "connecting" || this.state === "open") return;
    this.clearTimer();
    this.connect();
  }

  /** Close on purpose: no reconnection until start() again. */
  stop() {
    this.clearTimer();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      if (socket.readyState <= WebSocket.OPEN) socket.close(1000, "bye");
    }
    this.setState("stopped");
  }

  /** Skip the wait: used when the tab comes back to the foreground or the network returns. */
  reconnectNow() {
    if (this.state !== "waiting") return;
    this.clearTimer();
    this.connect();
  }

  /** Send a frame; false when not connected (the caller keeps what it wanted to send). */
  send(frame) {
    if (this.state !== "open" || !this.socket) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Take the `welcome` that answers this connection's `join`. Returns true when it
   * answers the cursor with another history: the room's epoch is not the one the
   * cursor came from (a new database, another server), or the server did not
   * resume from `since` at all. The cursor is forgotten then, since its ids meant
   * other messages, and the caller must forget every id it knows too.
   */
  welcomed(frame) {
    this.joined = true;
    const epoch = welcomeEpoch(frame);
    const asked = this.asked;
    const replaced =
      asked !== null &&
      asked.since !== null &&
      (frame.resumed === false || (asked.epoch !== null && epoch !== null && epoch !== asked.epoch));
    if (replaced) this.cursor = null;
    this.epoch = epoch;
    return replaced;
  }

  /** Advance the resume cursor to a message id the page has shown. */
  seen(id) {
    if (Number.isSafeInteger(id) && (this.cursor === null || id > this.cursor)) this.cursor = id;
  }

  connect() {
    this.setState("connecting");
    let socket;
    try {
      socket = new WebSocket(this.url, PROTOCOL);
    } catch (error) {
      console.error("pichat: cannot open", this.url, error);
      this.unreachable = true;
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.unreachable = false;
      this.attempt = 0;
      this.setState("open");
      const since = this.cursor !== null ? this.cursor : this.joined ? 0 : null;
      // The epoch only travels with a cursor: it says which history `since` is in.
      const epoch = since !== null ? this.epoch : null;
      this.asked = { since, epoch };
      socket.send(JSON.stringify(this.hello(since, epoch)));
    };
    socket.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (error) {
        console.warn("pichat: frame is not JSON", error);
        return;
      }
      if (frame === null || typeof frame !== "object") {
        console.warn("pichat: frame is not an object", frame);
        return;
      }
      this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    };
    // onerror is always followed by onclose, which does the work.
    socket.onerror = () => {};
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.unreachable = !opened;
      this.dispatchEvent(
        new CustomEvent("close", {
          detail: { code: event.code, reason: event.reason, wasClean: event.wasClean },
        }),
      );
      if (FINAL_CODES.has(event.code)) {
        this.setState("stopped");
        return;
      }
      this.scheduleRetry();
    };
  }

  scheduleRetry() {
    const delay = backoffDelay(this.attempt, this.options.backoff);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
    this.setState("waiting", delay);
  }

  clearTimer() {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  setState(state, delay = 0) {
    this.state = state;
    this.dispatchEvent(
      new CustomEvent("state", { detail: { state, delay, attempt: this.attempt } }),
    );
  }
}
