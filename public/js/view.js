// Rendering. Every piece of user text (names, avatar URLs, messages, server error
// details) reaches the DOM through textContent, createTextNode or a property such
// as `img.src` / `a.href`; never through innerHTML or markup strings.

import { findMentions } from "./mentions.js";

const AVATAR_COLOURS = 8;
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/giu;
const URL_HINT = /https?:\/\//iu;
const TRAILING_PUNCTUATION = /[.,;:!?)\]}'"»”’]+$/u;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayTimeFormat = new Intl.DateTimeFormat(undefined, {
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
});
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

// Avatar URLs whose picture failed once: later messages go straight to initials.
const brokenAvatars = new Set();

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Up to two letters for an initials avatar: first letters of the first two words. */
export function initials(name) {
  const words = String(name).trim().split(/[\s._-]+/u).filter(Boolean);
  const letters = words.slice(0, 2).map((word) => Array.from(word)[0]);
  const text = letters.join("") || "?";
  return text.toLocaleUpperCase();
}

/** A stable colour class for a name (so a person keeps one colour). */
export function colourClass(name) {
  // FNV-1a, then the high bits folded into the low ones the modulo keeps.
  let hash = 0x811c9dc5;
  for (const char of String(name).toLowerCase()) {
    hash = Math.imul(hash ^ char.codePointAt(0), 0x01000193);
  }
  hash ^= hash >>> 15;
  return `tint-${(hash >>> 0) % AVATAR_COLOURS}`;
}

/** True for an absolute http: or https: URL, the only avatars the server accepts. */
export function isHttpUrl(text) {
  if (typeof text !== "string" || text === "") return false;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

// One badge per name and size, cloned for each message: a history of 1000 lines
// from a dozen people computes a dozen badges.
const initialsCache = new Map();

function initialsAvatar(name, size) {
  const key = `${size}\u0000${name}`;
  let badge = initialsCache.get(key);
  if (!badge) {
    badge = element("span", `avatar avatar-${size} avatar-initials ${colourClass(name)}`, initials(name));
    badge.setAttribute("aria-hidden", "true");
    if (initialsCache.size > 500) initialsCache.clear();
    initialsCache.set(key, badge);
  }
  return badge.cloneNode(true);
}

/**
 * The avatar of `name`: the picture at `url`, or generated initials when there is
 * no usable URL or the picture does not load.
 */
export function avatar(url, name, size = "m") {
  if (!isHttpUrl(url) || brokenAvatars.has(url)) return initialsAvatar(name, size);
  const img = element("img", `avatar avatar-${size}`);
  img.alt = "";
  img.decoding = "async";
  img.loading = "lazy";
  img.referrerPolicy = "no-referrer";
  // Listen before setting src: a cached failure can fire as soon as src is set.
  img.addEventListener(
    "error",
    () => {
      brokenAvatars.add(url);
      img.replaceWith(initialsAvatar(name, size));
    },
    { once: true },
  );
  img.src = url;
  return img;
}

/** Plain text with each `@name` in a span (`mention`, plus `mention-me` for you). */
function mentionNodes(text, names, me) {
  if (!text.includes("@")) return [document.createTextNode(text)];
  const nodes = [];
  let last = 0;
  for (const mention of findMentions(text, names, me)) {
    if (mention.start > last) nodes.push(document.createTextNode(text.slice(last, mention.start)));
    nodes.push(element("span", mention.me ? "mention mention-me" : "mention", text.slice(mention.start, mention.end)));
    last = mention.end;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

/**
 * Message text as DOM nodes: plain text, with http(s) URLs as safe links and
 * `@name` mentions of `names` (and of `me`, more strongly) highlighted.
 */
export function linkify(text, names = [], me = null) {
  const fragment = document.createDocumentFragment();
  if (!URL_HINT.test(text)) {
    fragment.append(...mentionNodes(text, names, me));
    return fragment;
  }
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    let href = match[0];
    const trailing = href.match(TRAILING_PUNCTUATION);
    if (trailing) href = href.slice(0, -trailing[0].length);
    if (!isHttpUrl(href)) continue;
    if (match.index > last) fragment.append(...mentionNodes(text.slice(last, match.index), names, me));
    const link = element("a", "msg-link", href);
    link.href = href;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    fragment.append(link);
    last = match.index + href.length;
  }
  if (last < text.length) fragment.append(...mentionNodes(text.slice(last), names, me));
  return fragment;
}

/** Local midnight today and tomorrow, in ms: "today" needs only the time of day. */
function todayBounds() {
  const now = new Date();
  const start = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const end = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1).getTime();
  return [start, end];
}

function fillTime(node, iso, [start, end]) {
  const date = new Date(iso);
  const ms = date.getTime();
  if (Number.isNaN(ms)) return;
  node.dateTime = date.toISOString();
  node.textContent = (ms >= start && ms < end ? timeFormat : dayTimeFormat).format(date);
}

/** The full local date as a tooltip, made when first pointed at rather than per message. */
function addDateTooltip(event) {
  const time = event.target instanceof Element ? event.target.closest("time") : null;
  if (time && !time.title && time.dateTime) {
    time.title = fullFormat.format(new Date(time.dateTime));
  }
}

// The skeleton of a message, cloned for each one (much cheaper than building it).
const MESSAGE = (() => {
  const item = element("div", "msg");
  const body = element("div", "msg-body");
  const meta = element("p", "msg-meta");
  meta.append(element("span", "msg-name"), element("time", "msg-time"));
  body.append(meta, element("p", "msg-text"));
  item.append(body);
  return item;
})();

/** The chat log: messages in id order, each id once, plus presence and notice lines. */
export class LogView {
  constructor(log, newButton) {
    this.log = log;
    this.newButton = newButton;
    this.byId = new Map();
    this.lastId = -Infinity;
    this.unseenBelow = 0;
    this.me = null;
    // Called with each new message element (moderation adds its badge and menu).
    this.decorate = null;
    // The names a mention may name besides the authors seen: the people online.
    this.names = () => [];
    this.authors = new Set();
    this.divider = null;
    // Whether the reader is at the bottom: kept there when the log changes size (the
    // header wraps anew, a phone's keyboard opens), not only when messages arrive.
    this.stuck = true;
    log.addEventListener("scroll", () => {
      this.stuck = this.atBottom();
      if (this.stuck) this.hideNewButton();
    }, { passive: true });
    new ResizeObserver(() => {
      if (this.stuck) this.log.scrollTop = this.log.scrollHeight;
    }).observe(log);
    newButton.addEventListener("click", () => {
      this.scrollToBottom();
      this.log.focus({ preventScroll: true });
    });
    log.addEventListener("pointerover", addDateTooltip, { passive: true });
    log.addEventListener("focusin", addDateTooltip);
  }

  /** Whose messages are "mine" (the name the server gave this client). */
  setMe(name) {
    this.me = name;
  }

  has(id) {
    return this.byId.has(id);
  }

  /**
   * Add messages (any order, duplicates allowed); returns the ones actually new.
   * Messages after the last shown id are built in one fragment and inserted once.
   */
  addMessages(messages) {
    const stick = this.atBottom();
    const fresh = [];
    const tail = document.createDocumentFragment();
    const sorted = [...messages].sort((a, b) => a.id - b.id);
    const today = todayBounds();
    for (const message of sorted) {
      if (!Number.isSafeInteger(message.id) || this.byId.has(message.id)) continue;
      const node = this.messageElement(message, today);
      this.byId.set(message.id, node);
      fresh.push(message);
      if (message.id > this.lastId) {
        tail.append(node);
        this.lastId = message.id;
      } else {
        this.insertInOrder(node, message.id);
      }
    }
    this.log.append(tail);
    this.afterInsert(stick, fresh.filter((message) => message.name !== this.me).length);
    return fresh;
  }

  /** Forget every message and line (the server's history was replaced). */
  clear() {
    this.log.replaceChildren();
    this.byId.clear();
    this.lastId = -Infinity;
    this.hideNewButton();
  }

  /** A line for someone joining or leaving. */
  addPresence(event, name) {
    const stick = this.atBottom();
    const line = element("p", `line presence presence-${event}`);
    line.append(element("span", "presence-name", name));
    line.append(document.createTextNode(event === "join" ? " joined" : " left"));
    this.log.append(line);
    this.afterInsert(stick, 0);
  }

  /** A line from the page itself (reconnected, messages lost to retention). */
  addNotice(text) {
    const stick = this.atBottom();
    this.log.append(element("p", "line notice", text));
    this.afterInsert(stick, 0);
  }

  messageElement(message, today = todayBounds()) {
    const mine = this.me !== null && message.name === this.me;
    const item = MESSAGE.cloneNode(true);
    if (mine) item.classList.add("mine");
    if (message.announcement === true) item.classList.add("announcement");
    item.dataset.id = String(message.id);
    const body = item.firstChild;
    const meta = body.firstChild;
    const name = meta.firstChild;
    name.textContent = message.name;
    if (mine) name.after(element("span", "you-tag", "you"));
    fillTime(meta.lastChild, message.date, today);
    if (this.authors.size > 1000) this.authors.clear();
    this.authors.add(String(message.name));
    const text = String(message.text);
    const names = text.includes("@") ? [...this.authors, ...this.names()] : [];
    body.lastChild.append(linkify(text, names, this.me));
    if (!mine && body.lastChild.querySelector(".mention-me")) item.classList.add("mentions-me");
    item.prepend(avatar(message.avatar, message.name));
    if (this.decorate) this.decorate(item, message);
    return item;
  }

  /** Remove a message a moderator deleted; true when it was shown. */
  remove(id) {
    const node = this.byId.get(id);
    if (!node) return false;
    node.remove();
    this.byId.delete(id);
    return true;
  }

  /** Remove the messages up to `id` (a clear this page was away for). */
  removeThrough(id) {
    for (const [shownId, node] of this.byId) {
      if (shownId <= id) {
        node.remove();
        this.byId.delete(shownId);
      }
    }
  }

  /** Remove every message (a moderator cleared the room); ids go on from the last. */
  clearMessages() {
    for (const node of this.byId.values()) node.remove();
    this.byId.clear();
  }

  /** The "new since you left" line, before message `id` (one at a time). */
  markUnread(id) {
    const node = this.byId.get(id);
    if (!node) return;
    this.divider?.remove();
    this.divider = element("div", "line unread-divider", "New since you left");
    this.divider.setAttribute("role", "separator");
    node.before(this.divider);
  }

  /** Scroll the divider into view if it is above what is shown (on return). */
  revealDivider() {
    const divider = this.divider;
    if (!divider || !divider.isConnected) return;
    const above = divider.getBoundingClientRect().top - this.log.getBoundingClientRect().top;
    if (above < 0) this.log.scrollTop += above - 8;
  }

  /** Show message `id` and give it the focus (a notification about it was clicked). */
  focusMessage(id) {
    const node = this.byId.get(id);
    if (!node) return false;
    node.tabIndex = -1;
    node.scrollIntoView({ block: "center" });
    node.focus({ preventScroll: true });
    node.classList.add("focused");
    node.addEventListener("blur", () => node.classList.remove("focused"), { once: true });
    return true;
  }

  insertInOrder(node, id) {
    // Rare (a message older than the newest shown): walk back from the end.
    const messages = this.log.querySelectorAll(".msg");
    for (let index = messages.length - 1; index >= 0; index -= 1) {
      if (Number(messages[index].dataset.id) < id) {
        messages[index].after(node);
        return;
      }
    }
    this.log.prepend(node);
  }

  atBottom() {
    const { scrollHeight, scrollTop, clientHeight } = this.log;
    return scrollHeight - scrollTop - clientHeight < 48;
  }

  scrollToBottom() {
    this.stuck = true;
    this.log.scrollTop = this.log.scrollHeight;
    this.hideNewButton();
  }

  afterInsert(stick, newFromOthers) {
    if (stick) {
      this.scrollToBottom();
    } else if (newFromOthers > 0) {
      this.unseenBelow += newFromOthers;
      this.newButton.textContent =
        this.unseenBelow === 1 ? "1 new message ↓" : `${this.unseenBelow} new messages ↓`;
      this.newButton.hidden = false;
    }
  }

  hideNewButton() {
    this.unseenBelow = 0;
    this.newButton.hidden = true;
  }
}

/** Whether two entries of the online list show the same. */
function samePerson(a, b) {
  return a.name === b.name && (a.avatar ?? "") === (b.avatar ?? "") && !a.moderator === !b.moderator;
}

/**
 * The list of people online, with its count. The server lists at most a hundred in a
 * `welcome` (the count is always exact); the others come from presence frames or, when
 * asked for with the *Show everyone* button, from `online` pages.
 */
export class OnlineView {
  constructor(list, count) {
    this.list = list;
    this.count = count;
    this.people = new Map();
    this.me = null;
    this.total = 0;
    // Called with each person's list item (moderation adds its badge and menu).
    this.decorate = null;
    // Called when the reader asks for the people not listed yet.
    this.onMore = null;
  }

  setMe(name) {
    this.me = name;
  }

  /** Replace the whole list (from a `welcome`); `total` is the exact number online. */
  reset(people, total) {
    this.people.clear();
    for (const person of people) this.people.set(String(person.name).toLowerCase(), person);
    this.render(total);
  }

  /** Add people (an `online` page) without changing the count. */
  add(people) {
    for (const person of people) this.people.set(String(person.name).toLowerCase(), person);
    this.render(this.total);
  }

  /** A presence frame: names that left go first, then who joined; one render. */
  update(joined, left, total) {
    let changed = Number.isSafeInteger(total) && total !== this.total;
    for (const name of left) changed = this.people.delete(String(name).toLowerCase()) || changed;
    for (const person of joined) {
      const key = String(person.name).toLowerCase();
      const known = this.people.get(key);
      // Your own join, and those your welcome listed, come back in the next frame:
      // re-rendering for them would close a menu the reader just opened.
      if (!known || !samePerson(known, person)) {
        this.people.set(key, person);
        changed = true;
      }
    }
    if (changed) this.render(total);
  }

  join(person, total) {
    this.update([person], [], total);
  }

  leave(name, total) {
    this.update([], [name], total);
  }

  render(total) {
    this.total = Number.isSafeInteger(total) ? Math.max(total, this.people.size) : this.people.size;
    const sorted = [...this.people.values()].sort((a, b) =>
      String(a.name).localeCompare(String(b.name), undefined, { sensitivity: "base" }),
    );
    const fragment = document.createDocumentFragment();
    for (const person of sorted) {
      const item = element("li", "person");
      item.append(avatar(person.avatar, person.name, "s"));
      item.append(element("span", "person-name", person.name));
      if (person.name === this.me) item.append(element("span", "you-tag", "you"));
      if (this.decorate) this.decorate(item, person);
      fragment.append(item);
    }
    const unlisted = this.total - this.people.size;
    if (unlisted > 0) {
      const item = element("li", "person person-more");
      item.append(element("span", "more-count", `and ${unlisted} more`));
      const button = element("button", "show-everyone", "Show everyone");
      button.type = "button";
      button.addEventListener("click", () => {
        button.disabled = true;
        if (this.onMore) this.onMore();
      });
      item.append(button);
      fragment.append(item);
    }
    this.list.replaceChildren(fragment);
    this.count.textContent = String(this.total);
  }
}
