// Who is typing: the frames this page sends while its person types, and the line
// under the log that says who else is.

/** At most one `typing` frame per this many ms (the server relays one per 3 s: the
 * extra half second keeps network jitter from bringing two closer than that). */
export const SEND_EVERY = 3500;
/** How long a name stays shown without a new frame from it. */
export const SHOWN_FOR = 5000;

/** Sends `{"type":"typing"}` while text is being written, at most once per SEND_EVERY. */
export class TypingSender {
  /** @param {(frame: object) => boolean} send  false when the frame could not go out */
  constructor(send) {
    this.send = send;
    this.last = -Infinity;
  }

  /** The composer's text changed to `text`. */
  input(text) {
    if (text.trim() === "") return;
    const now = Date.now();
    if (now - this.last < SEND_EVERY) return;
    if (this.send({ type: "typing" })) this.last = now;
  }

  /** A new connection: the server's interval starts over too. */
  reset() {
    this.last = -Infinity;
  }
}

/** "Ada is typing…", "Ada and Bob are typing…", "3 people are typing…". */
export function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}

/** The line that shows who is typing; each name goes after SHOWN_FOR or its message. */
export class TypingView {
  constructor(line) {
    this.line = line;
    // name -> when it stops being shown (Date.now() ms), in the order they started.
    this.until = new Map();
    this.timer = null;
    this.render();
  }

  typing(name) {
    this.until.delete(name);
    this.until.set(String(name), Date.now() + SHOWN_FOR);
    this.render();
  }

  /** Their message arrived, or they left. */
  stopped(name) {
    if (this.until.delete(String(name))) this.render();
  }

  clear() {
    this.until.clear();
    this.render();
  }

  render() {
    const now = Date.now();
    for (const [name, until] of this.until) if (until <= now) this.until.delete(name);
    const text = typingText([...this.until.keys()]);
    if (this.line.textContent !== text) this.line.textContent = text;
    this.line.classList.toggle("active", text !== "");
    clearTimeout(this.timer);
    this.timer = null;
    if (this.until.size > 0) {
      const next = Math.min(...this.until.values());
      this.timer = setTimeout(() => this.render(), Math.max(0, next - now));
    }
  }
}
