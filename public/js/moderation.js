// Moderation on the page: the badge, a moderator's menus on messages and people
// (each action confirmed in place, no dialog), and the room's locked / slow state.
// User text reaches the DOM only through textContent, as everywhere else.

/** Close codes after which the page does not reconnect by itself. */
export const KICKED = 4001;
export const BANNED = 4003;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The badge nobody but a moderator gets. */
export function badge() {
  const tag = element("span", "mod-tag", "mod");
  tag.title = "Moderator";
  return tag;
}

/**
 * A small menu button: a list of actions, each asking "Sure?" in place before it runs.
 * Keyboard: Enter/Space open it, Escape closes it, focus moves to the first action.
 */
function menu(label, actions) {
  const wrap = element("span", "mod-menu");
  const button = element("button", "mod-button", "⋯");
  button.type = "button";
  button.setAttribute("aria-label", label);
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-haspopup", "true");
  const panel = element("span", "mod-panel");
  panel.hidden = true;
  const close = () => {
    panel.hidden = true;
    panel.replaceChildren();
    button.setAttribute("aria-expanded", "false");
  };
  const open = () => {
    panel.replaceChildren();
    for (const action of actions) {
      const item = element("button", "mod-item", action.label);
      item.type = "button";
      item.dataset.action = action.id;
      item.addEventListener("click", () => confirm(action));
      panel.append(item);
    }
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    panel.firstChild?.focus();
  };
  const confirm = (action) => {
    const question = element("span", "mod-question", action.question);
    question.setAttribute("role", "alert");
    const yes = element("button", "mod-item mod-confirm", "Confirm");
    yes.type = "button";
    const no = element("button", "mod-item", "Cancel");
    no.type = "button";
    yes.addEventListener("click", () => {
      close();
      action.run();
      button.focus();
    });
    no.addEventListener("click", () => {
      close();
      button.focus();
    });
    panel.replaceChildren(question, yes, no);
    yes.focus();
  };
  button.addEventListener("click", () => (panel.hidden ? open() : close()));
  wrap.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden) {
      event.stopPropagation();
      close();
      button.focus();
    }
  });
  wrap.append(button, panel);
  return wrap;
}

/** What a moderator sees and does; inert for everyone else. */
export class Moderation {
  /**
   * @param {(frame: object) => boolean} send  sends a frame to the server
   * @param {HTMLElement} stateLine  where the room's state is shown
   * @param {HTMLButtonElement} lockButton  the moderator's lock / unlock toggle
   */
  constructor(send, stateLine, lockButton) {
    this.send = send;
    this.stateLine = stateLine;
    this.lockButton = lockButton;
    this.moderator = false;
    this.me = null;
    this.locked = false;
    this.slow = 0;
    lockButton.addEventListener("click", () => this.send({ type: "lock", locked: !this.locked }));
  }

  /** From a welcome: who I am, and the room's state. */
  welcome(frame) {
    this.moderator = Boolean(frame.you && frame.you.moderator);
    this.me = frame.you ? frame.you.name : null;
    this.lockButton.hidden = !this.moderator;
    this.room(frame);
  }

  /** A `room` frame (or a welcome): locked and slow mode. */
  room(frame) {
    this.locked = frame.locked === true;
    this.slow = Number.isSafeInteger(frame.slow) ? frame.slow : 0;
    const parts = [];
    if (this.locked) parts.push("The room is locked: only moderators may post.");
    if (this.slow > 0) parts.push(`Slow mode: one message every ${this.slow} s.`);
    this.stateLine.textContent = parts.join(" ");
    this.stateLine.hidden = parts.length === 0;
    this.lockButton.textContent = this.locked ? "Unlock room" : "Lock room";
    this.lockButton.setAttribute("aria-pressed", this.locked ? "true" : "false");
  }

  /** Decorate a message element: the badge, and a moderator's delete menu. */
  decorateMessage(item, message) {
    const meta = item.querySelector(".msg-meta");
    if (message.moderator === true) meta.querySelector(".msg-name").after(badge());
    if (!this.moderator) return;
    meta.append(
      menu(`Moderate the message from ${message.name}`, [
        {
          id: "delete",
          label: "Delete message",
          question: "Delete this message for everyone?",
          run: () => this.send({ type: "delete", id: message.id }),
        },
      ]),
    );
  }

  /** Decorate a person of the online list: the badge, and a moderator's menu. */
  decoratePerson(item, person) {
    if (person.moderator === true) {
      item.querySelector(".person-name").after(badge());
      return; // moderators cannot be kicked, banned or muted
    }
    if (!this.moderator || person.name === this.me) return;
    const name = String(person.name);
    const ban = (minutes, span) => ({
      id: `ban-${minutes}`,
      label: `Ban ${span}`,
      question: `Ban ${name} ${span}?`,
      run: () => this.send({ type: "ban", name, minutes }),
    });
    item.append(
      menu(`Moderate ${name}`, [
        {
          id: "kick",
          label: "Kick",
          question: `Remove ${name} from the room?`,
          run: () => this.send({ type: "kick", name }),
        },
        {
          id: "mute",
          label: "Mute 10 min",
          question: `Mute ${name} for 10 minutes?`,
          run: () => this.send({ type: "mute", name, minutes: 10 }),
        },
        ban(60, "for 1 hour"),
        ban(1440, "for 1 day"),
        ban(0, "until lifted"),
      ]),
    );
  }
}

/** The words for the moderation errors (null: not one of them). */
export function moderationErrorText(frame) {
  switch (frame.code) {
    case "name_reserved":
      return "That name belongs to a moderator. Enter its password, or pick another name.";
    case "bad_password":
      return "That password is not right.";
    case "name_banned":
      return "That name is banned from this chat.";
    case "muted":
      return "A moderator muted you for now; you can still read.";
    case "room_locked":
      return "The room is locked: only moderators may post right now.";
    case "forbidden":
      return "Only moderators may do that.";
    case "no_message":
      return "That message is already gone.";
    case "no_member":
      return "That person is no longer here.";
    default:
      return null;
  }
}

/** What the page says after a close it does not recover from by itself. */
export function closedText(code, reason) {
  const why = reason ? `: ${reason}` : ".";
  if (code === KICKED) return `A moderator removed you from the room${why} You may join again.`;
  if (code === BANNED) return `A moderator banned you from this chat${why}`;
  return null;
}

/**
 * What the page says when site.json reports the visitor's address banned: the
 * browser hides the handshake's 403, so without this the page would only retry.
 */
export function bannedText(ban) {
  if (!ban || typeof ban !== "object") return null;
  const reason = typeof ban.reason === "string" && ban.reason ? `: ${ban.reason}` : ".";
  if (typeof ban.until === "number" && ban.until > 0) {
    const until = new Date(ban.until).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    return `Your address is banned from this chat until ${until}${reason}`;
  }
  return `Your address is banned from this chat${reason}`;
}
