// Wiring: the join form, the composer, the status line and the frames from the server.

import { Suggest, mentionsMe } from "./mentions.js";
import { Moderation, bannedText, closedText, moderationErrorText } from "./moderation.js";
import { Notifier, setBadge } from "./notify.js";
import { registerWorker } from "./pwa.js";
import { Transport, socketUrl } from "./transport.js";
import { TypingSender, TypingView } from "./typing.js";
import { LogView, OnlineView, avatar, isHttpUrl } from "./view.js";

const STORE_NAME = "pichat.name";
const STORE_AVATAR = "pichat.avatar";
// Per tab: a reload of a joined tab joins again at once; a new visit shows the form.
const SESSION_JOINED = "pichat.joined";
const JOIN_ERRORS = new Set([
  "bad_name",
  "name_too_long",
  "bad_avatar",
  "bad_since",
  "bad_epoch",
  "already_joined",
  "name_reserved",
  "bad_password",
  "name_banned",
]);
const GAP_NOTICE = "Some messages were sent while you were away and are no longer kept.";
const RESET_NOTICE = "The chat history was reset on the server; showing the current history.";
// The errors that answer a `say`: its text goes back to the box.
const SAY_ERRORS = new Set([
  "rate_limited",
  "text_too_long",
  "empty_text",
  "bad_text",
  "not_joined",
  "muted",
  "room_locked",
  "unavailable",
  "bad_json",
  "bad_frame",
]);
// Join refusals that a moderator's password answers: the form shows its field.
const PASSWORD_ERRORS = new Set(["name_reserved", "bad_password"]);
// What the server refuses in names and texts: controls, lone surrogates, line and
// paragraph separators, and bidi overrides (they let a name pass for another).
const NAME_CONTROL = /[\p{Cc}\p{Cs}\p{Zl}\p{Zp}\u202a-\u202e\u2066-\u2069]/u;
const TEXT_CONTROL = /(?![\n\t])[\p{Cc}\p{Cs}\p{Zl}\p{Zp}\u202a-\u202e\u2066-\u2069]/u;

const $ = (id) => document.getElementById(id);
const ui = {
  title: $("title"),
  room: $("room"),
  status: $("status"),
  statusText: $("status-text"),
  statusCountdown: $("status-countdown"),
  retry: $("retry"),
  leave: $("leave"),
  join: $("join"),
  joinForm: $("join-form"),
  joinName: $("join-name"),
  joinAvatar: $("join-avatar"),
  joinPassword: $("join-password"),
  joinPasswordField: $("join-password-field"),
  joinPreview: $("join-preview"),
  joinError: $("join-error"),
  chat: $("chat"),
  composer: $("composer"),
  text: $("composer-text"),
  send: $("composer-send"),
  count: $("composer-count"),
  composerError: $("composer-error"),
  online: $("online"),
  onlineDetails: $("online-details"),
  settings: $("settings"),
  typing: $("typing"),
};

const state = {
  title: "pichat",
  limits: { text: 2000, name: 32, rate_messages: 10, rate_window: 10 },
  name: "",
  avatar: "",
  // A moderator's password: kept in memory for reconnects, never stored.
  password: "",
  you: null,
  // True between a `welcome` and the end of that connection.
  joined: false,
  unread: 0,
  // Texts sent and not yet seen back, oldest first: an error answer to a `say`
  // gives the text back to the composer instead of losing it.
  pending: [],
  blockedUntil: 0,
  transport: null,
  countdown: null,
  // A long resume being paged in (the welcome said `more`), or null:
  // {after: the id the next page follows, missed: how many came so far,
  //  gap: whether the gap line was shown, held: live messages waiting}.
  // Live messages are newer than every page, but may come first: showing them
  // would move the resume cursor past messages not fetched yet, so that a drop
  // mid-way resumed after them. They wait, and follow the last page.
  catchUp: null,
  // Since the page was last hidden, or null: {after: the last id shown then,
  // placed: whether the "new since you left" line is in, settle: the page is
  // visible again and waits for the catch-up before it stops looking}.
  away: null,
  // A message to show once it is in the log (a notification opened the page), or null.
  focusId: null,
  // How many of the server's online list (join order) this page has been sent.
  onlineAfter: 0,
  // The names the last welcome listed, until the first presence frame after it
  // (which repeats the joins of that tick): no line for those.
  welcomed: null,
};

const log = new LogView($("log"), $("new-messages"));
const online = new OnlineView($("online-list"), $("online-count"));
const moderation = new Moderation(
  (frame) => state.transport !== null && state.transport.send(frame),
  $("room-state"),
  $("lock-room"),
);
log.decorate = (item, message) => moderation.decorateMessage(item, message);
online.decorate = (item, person) => moderation.decoratePerson(item, person);
// The reader asked for everyone: page through `online` from where the welcome stopped.
online.onMore = () => {
  if (state.joined && state.transport !== null) {
    state.transport.send({ type: "online", after: state.onlineAfter });
  }
};
const onlineNames = () => [...online.people.values()].map((person) => String(person.name));
log.names = onlineNames;
const typingView = new TypingView(ui.typing);
const typingSender = new TypingSender(
  (frame) => state.joined && state.transport !== null && state.transport.send(frame),
);
// Created before the composer's own keydown listener: Enter picks a name first.
new Suggest(
  ui.text,
  $("suggest"),
  () => onlineNames().filter((name) => name !== state.you?.name),
  () => updateComposer(),
);
// Whether the reader did anything on this page yet (a key, a tap, a click).
let interacted = false;
for (const kind of ["keydown", "pointerdown"]) {
  addEventListener(kind, () => { interacted = true; }, { capture: true, once: true, passive: true });
}
// Only where the page can be an app (a secure context); elsewhere this is null. A new
// version is switched to (a reload) only before the reader did anything, or while
// the page is in the background with nothing typed.
const registration = registerWorker(
  () => ui.text.value === "" && (document.hidden || !interacted),
);
const notifier = new Notifier(
  { mentions: $("notify-mentions"), all: $("notify-all"), hint: $("notify-hint") },
  registration,
  (id) => focusMessage(id),
);

/** Length as the server counts it (code points, not UTF-16 units). */
function length(text) {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function store(key, value) {
  try {
    if (value) localStorage.setItem(key, value);
    else localStorage.removeItem(key);
  } catch {
    // Storage can be disabled (private mode, quota); remembering is only a convenience.
  }
}

function recall(key, storage = localStorage) {
  try {
    return storage.getItem(key) || "";
  } catch {
    return "";
  }
}

// ---- Site: title and limits -------------------------------------------------

function applySite(site) {
  if (typeof site.title === "string" && site.title) {
    state.title = site.title;
    ui.title.textContent = site.title;
    updateTitle();
  }
  if (typeof site.room === "string") ui.room.textContent = `#${site.room}`;
  if (site.limits && typeof site.limits === "object") {
    state.limits = { ...state.limits, ...site.limits };
    ui.joinName.maxLength = state.limits.name * 2;
    updateComposer();
  }
}

/** Loads site.json; returns the ban text when it says this address is banned. */
async function loadSite() {
  try {
    const response = await fetch("site.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const site = await response.json();
    applySite(site);
    return bannedText(site.banned);
  } catch (error) {
    // The welcome frame carries the same fields; the page works without this.
    console.warn("pichat: cannot load site.json", error);
    return null;
  }
}

/**
 * A handshake refused before the socket opened looks like a network failure
 * (close code 1006); site.json tells a banned address apart, and then the page
 * stops retrying and says why.
 */
async function checkBanned() {
  const banned = await loadSite();
  if (banned !== null && state.transport && !state.joined && state.transport.state !== "stopped") {
    leave(banned);
  }
}

function updateTitle() {
  document.title = state.unread > 0 ? `(${state.unread}) ${state.title}` : state.title;
  setBadge(state.unread);
}

/** Show a message a notification was about (now, or once the log has it). */
function focusMessage(id) {
  state.focusId = Number.isSafeInteger(id) && !log.focusMessage(id) ? id : null;
}

// ---- Join ------------------------------------------------------------------

function validateJoin(name, avatarUrl) {
  if (!name) return "Enter a name to join.";
  if (NAME_CONTROL.test(name)) return "A name cannot contain control or text-direction characters.";
  if (length(name) > state.limits.name) {
    return `That name is too long: at most ${state.limits.name} characters.`;
  }
  if (/\s/u.test(avatarUrl)) return "The avatar link cannot contain spaces.";
  if (avatarUrl && !isHttpUrl(avatarUrl)) {
    return "The avatar must be a link starting with http:// or https:// (or left empty).";
  }
  if (length(avatarUrl) > 500) return "The avatar link is too long: at most 500 characters.";
  return "";
}

function showJoin(error = "") {
  ui.settings.hidden = true;
  ui.chat.hidden = true;
  ui.online.hidden = true;
  ui.leave.hidden = true;
  ui.join.hidden = false;
  ui.joinError.textContent = error;
  ui.joinName.setAttribute("aria-invalid", error ? "true" : "false");
  ui.joinName.focus();
}

function showChat() {
  ui.join.hidden = true;
  ui.chat.hidden = false;
  ui.online.hidden = false;
  ui.leave.hidden = false;
  ui.settings.hidden = !notifier.supported;
  ui.joinError.textContent = "";
}

function join(name, avatarUrl, password = "") {
  state.name = name;
  state.avatar = avatarUrl;
  state.password = password;
  store(STORE_NAME, name);
  store(STORE_AVATAR, avatarUrl);
  try {
    sessionStorage.setItem(SESSION_JOINED, "1");
  } catch {
    // Without session storage a reload shows the (filled) form again.
  }
  showChat();
  if (!state.transport) {
    state.transport = new Transport(socketUrl(location), (since, epoch) => {
      const hello = { type: "join", name: state.name, avatar: state.avatar, since, epoch };
      if (state.password) hello.password = state.password;
      return hello;
    });
    state.transport.addEventListener("state", onState);
    state.transport.addEventListener("frame", (event) => onFrame(event.detail));
    state.transport.addEventListener("close", onClose);
  }
  state.transport.start();
  ui.text.focus();
}

function leave(error = "") {
  try {
    sessionStorage.removeItem(SESSION_JOINED);
  } catch {
    // Nothing to forget.
  }
  state.joined = false;
  if (state.transport) state.transport.stop();
  showJoin(error);
}

function updatePreview() {
  const url = ui.joinAvatar.value.trim();
  ui.joinPreview.replaceChildren(avatar(url, ui.joinName.value.trim() || "?", "l"));
}

// ---- Connection state --------------------------------------------------------

function setStatus(kind, text, countdown = "") {
  ui.status.dataset.state = kind;
  // Only a change of the announced text is read out: the seconds ticking down are
  // shown but hidden from screen readers, which would otherwise hear every second.
  if (ui.statusText.textContent !== text) ui.statusText.textContent = text;
  ui.statusCountdown.textContent = countdown;
}

function onState(event) {
  const { state: connection, attempt } = event.detail;
  // How many connection attempts failed in a row (0 once one opens).
  ui.status.dataset.attempt = String(attempt);
  clearInterval(state.countdown);
  state.countdown = null;
  ui.retry.hidden = connection !== "waiting";
  switch (connection) {
    case "connecting":
      setStatus("connecting", "Connecting…");
      break;
    case "open":
      setStatus("connecting", "Joining…");
      break;
    case "waiting": {
      // The page may have opened from the service worker's cache with the Pi away.
      const text = state.transport.unreachable ? "Offline, retrying" : "Reconnecting";
      const tick = () => {
        const seconds = Math.max(1, Math.ceil((state.transport.retryAt - Date.now()) / 1000));
        setStatus("waiting", text, ` in ${seconds} s`);
      };
      tick();
      state.countdown = setInterval(tick, 1000);
      break;
    }
    case "stopped":
    case "idle":
      setStatus("idle", "Not connected");
      break;
    default:
      console.warn("pichat: unknown connection state", connection);
  }
  updateComposer();
}

function onClose(event) {
  const wasJoined = state.joined;
  state.joined = false;
  state.pending = [];
  // What was held is fetched again: the cursor never passed it.
  state.catchUp = null;
  typingView.clear();
  if (wasJoined) console.info("pichat: connection closed", event.detail.code, event.detail.reason);
  const final = closedText(event.detail.code, event.detail.reason);
  if (final !== null) {
    // Kicked or banned: no automatic reconnection; the form offers to join again.
    leave(final);
    return;
  }
  if (!wasJoined && event.detail.code === 1006) checkBanned();
  updateComposer();
}

// ---- Frames ------------------------------------------------------------------

function onFrame(frame) {
  switch (frame.type) {
    case "welcome":
      onWelcome(frame);
      break;
    case "message":
      if (state.catchUp) state.catchUp.held.push(frame);
      else onMessages([frame]);
      break;
    case "history":
      onHistoryPage(frame);
      break;
    case "presence":
      onPresence(frame);
      break;
    case "online":
      if (Array.isArray(frame.online)) {
        online.add(frame.online);
        state.onlineAfter = (Number.isSafeInteger(frame.after) ? frame.after : 0) + frame.online.length;
        if (frame.more === true && frame.online.length > 0) online.onMore();
      }
      break;
    case "typing":
      if (typeof frame.name === "string" && frame.name !== state.you?.name) typingView.typing(frame.name);
      break;
    case "error":
      onError(frame);
      break;
    case "deleted":
      log.remove(frame.id);
      break;
    case "cleared":
      log.clearMessages();
      log.addNotice("A moderator cleared the room's history.");
      break;
    case "room":
      moderation.room(frame);
      break;
    case "done":
      log.addNotice(`Done: ${frame.action}${frame.name ? ` ${frame.name}` : ""}.`);
      break;
    default:
      console.warn("pichat: unknown frame type", frame.type, frame);
  }
}

function onWelcome(frame) {
  const before = state.you;
  // True when the server's history is not the one this page's ids came from (its
  // database was replaced): they now name other messages, so all of them go.
  const replaced = state.transport.welcomed(frame);
  state.joined = true;
  state.you = frame.you;
  typingView.clear();
  typingSender.reset();
  moderation.welcome(frame);
  log.setMe(frame.you.name);
  online.setMe(frame.you.name);
  applySite(frame);
  const listed = Array.isArray(frame.online) ? frame.online : [];
  state.onlineAfter = listed.length;
  state.welcomed = new Set(listed.map((person) => String(person.name)));
  // Past a hundred online the welcome lists the first hundred: add yourself.
  online.reset([...listed, frame.you], Number.isSafeInteger(frame.count) ? frame.count : undefined);
  if (replaced) log.clear();
  else if (frame.resumed === true) forgetRemoved(frame);
  const history = Array.isArray(frame.history) ? frame.history : [];
  const gap = frame.gap === true && !replaced;
  if (gap) log.addNotice(GAP_NOTICE);
  const fresh = onMessages(history, { live: false });
  if (replaced) log.addNotice(RESET_NOTICE);
  state.catchUp = null;
  const last = lastId(history);
  if (frame.more === true && last !== null) {
    state.catchUp = { after: last, missed: fresh.length, gap, held: [] };
    requestPage();
  } else {
    if (frame.resumed) reconnectedNotice(fresh.length);
    settleAway();
  }
  if (frame.you.name !== state.name && (!before || before.name !== frame.you.name)) {
    log.addNotice(`Someone here is already called ${state.name}, so you are ${frame.you.name}.`);
  }
  setStatus("online", "Online");
  ui.composerError.textContent = "";
  updateComposer();
}

/** The most join and leave lines one presence frame writes before it sums them up. */
const PRESENCE_LINES = 4;

/**
 * A presence frame: every join and leave of one server tick (`left` first, then
 * `joined`), with the exact count. A server older than coalescing sends one event
 * per frame (`event`, `name`); the page reads both.
 */
function onPresence(frame) {
  let joined = Array.isArray(frame.joined) ? frame.joined : [];
  let left = Array.isArray(frame.left) ? frame.left.map(String) : [];
  if (frame.event === "join") joined = [{ name: frame.name, avatar: frame.avatar, moderator: frame.moderator }];
  else if (frame.event === "leave") left = [String(frame.name)];
  online.update(joined, left, frame.count);
  for (const name of left) typingView.stopped(name);
  const me = state.you?.name;
  // Your own join comes back in the tick's frame: the welcome already said it.
  const welcomed = state.welcomed ?? new Set();
  state.welcomed = null;
  const joinedOthers = joined
    .map((person) => String(person.name))
    .filter((name) => name !== me && !welcomed.has(name));
  const lines = left.length + joinedOthers.length;
  if (lines === 0) return;
  if (lines <= PRESENCE_LINES) {
    for (const name of left) log.addPresence("leave", name);
    for (const name of joinedOthers) log.addPresence("join", name);
    return;
  }
  const parts = [];
  if (joinedOthers.length) parts.push(`${joinedOthers.length} people joined`);
  if (left.length) parts.push(`${left.length} left`);
  log.addNotice(`${parts.join(", ")}.`);
}

/** Take away what moderators deleted or cleared while this page was away. */
function forgetRemoved(frame) {
  if (Array.isArray(frame.deleted)) {
    for (const id of frame.deleted) if (Number.isSafeInteger(id)) log.remove(id);
  }
  if (Number.isSafeInteger(frame.cleared)) log.removeThrough(frame.cleared);
}

/** The highest message id among `messages`, or `floor` when none is higher. */
function lastId(messages, floor = null) {
  let last = floor;
  for (const message of messages) {
    const id = message && typeof message === "object" ? message.id : undefined;
    if (Number.isSafeInteger(id) && (last === null || id > last)) last = id;
  }
  return last;
}

function reconnectedNotice(missed) {
  if (missed === 1) log.addNotice("Reconnected: 1 message you missed is above.");
  else if (missed > 1) log.addNotice(`Reconnected: ${missed} messages you missed are above.`);
}

/** Ask for the page after the last message the catch-up brought. */
function requestPage() {
  // A false send means the socket is closing: its close ends the catch-up.
  state.transport.send({ type: "history", after: state.catchUp.after });
}

/** One page of a long resume; the next is asked for until `more` is false. */
function onHistoryPage(frame) {
  const catchUp = state.catchUp;
  if (!catchUp) {
    console.warn("pichat: a history page that was not asked for", frame);
    return;
  }
  const messages = Array.isArray(frame.messages) ? frame.messages : [];
  if (frame.gap === true && !catchUp.gap) {
    catchUp.gap = true;
    log.addNotice(GAP_NOTICE);
  }
  catchUp.missed += onMessages(messages, { live: false }).length;
  const last = lastId(messages, catchUp.after);
  // A page that does not advance would be asked for forever: stop there.
  if (frame.more === true && last > catchUp.after) {
    catchUp.after = last;
    requestPage();
    return;
  }
  finishCatchUp();
}

/** The pages are in: say how many were missed, then show the live messages held. */
function finishCatchUp() {
  const catchUp = state.catchUp;
  state.catchUp = null;
  reconnectedNotice(catchUp.missed);
  onMessages(catchUp.held);
  settleAway();
}

/** Back from a hidden period and caught up: what comes next is not "since you left". */
function settleAway() {
  if (state.away && state.away.settle) {
    state.away = null;
    log.revealDivider();
  }
}

function onMessages(messages, { live = true } = {}) {
  const fresh = log.addMessages(messages.filter((message) => message && typeof message === "object"));
  const me = state.you ? state.you.name : null;
  for (const message of fresh) {
    state.transport.seen(message.id);
    typingView.stopped(message.name);
    if (me !== null && message.name === me) {
      if (message.text === state.pending[0]) state.pending.shift();
      continue;
    }
    const away = state.away;
    if (away && !away.placed && message.id > away.after) {
      away.placed = true;
      log.markUnread(message.id);
    }
    if (live && document.hidden) {
      state.unread += 1;
      notifier.message(message, mentionsMe(message.text, me, onlineNames()));
    }
  }
  if (state.focusId !== null && log.has(state.focusId)) focusMessage(state.focusId);
  updateTitle();
  return fresh;
}

function errorText(frame) {
  const limits = state.limits;
  const moderationText = moderationErrorText(frame);
  if (moderationText !== null) return moderationText;
  switch (frame.code) {
    case "rate_limited": {
      const wait = Number(frame.retry_after);
      return Number.isFinite(wait)
        ? `You are sending too fast. Wait ${wait.toFixed(1)} s, then send again.`
        : "You are sending too fast. Wait a moment, then send again.";
    }
    case "text_too_long":
      return `That message is too long: at most ${limits.text} characters.`;
    case "empty_text":
      return "Write something before sending.";
    case "bad_text":
      return "That message contains control or text-direction characters that cannot be sent.";
    case "bad_name":
      return "That name cannot be used: it is empty or contains control or text-direction characters.";
    case "name_too_long":
      return `That name is too long: at most ${limits.name} characters.`;
    case "bad_avatar":
      return "The avatar must be a link starting with http:// or https:// (or left empty).";
    case "not_joined":
      return "You are not in the room yet; wait a moment and send again.";
    default:
      return `The server refused that (${frame.code}): ${frame.detail ?? "no detail"}.`;
  }
}

function onError(frame) {
  if (JOIN_ERRORS.has(frame.code)) {
    leave();
    if (PASSWORD_ERRORS.has(frame.code)) ui.joinPasswordField.hidden = false;
    siteLoaded.then(() => {
      showJoin(errorText(frame));
      if (PASSWORD_ERRORS.has(frame.code)) ui.joinPassword.focus();
    });
    return;
  }
  if (!SAY_ERRORS.has(frame.code)) {
    // Not the answer to a `say` (a moderator's action): say so, keep the box as it is.
    ui.composerError.textContent = errorText(frame);
    return;
  }
  if (frame.code === "bad_after" && state.catchUp) {
    // The server refused a page this page asked for (it should not): show what came.
    console.warn("pichat: history page refused", frame.detail);
    finishCatchUp();
    return;
  }
  // Every other error answers a `say`: give its text back if the box is empty.
  const unsent = state.pending.shift();
  if (unsent !== undefined && ui.text.value === "") {
    ui.text.value = unsent;
  }
  if (frame.code === "rate_limited" && Number.isFinite(Number(frame.retry_after))) {
    state.blockedUntil = Date.now() + Number(frame.retry_after) * 1000;
    setTimeout(updateComposer, Number(frame.retry_after) * 1000 + 50);
  }
  ui.composerError.textContent = errorText(frame);
  updateComposer();
}

// ---- Composer ------------------------------------------------------------------

function updateComposer() {
  const text = ui.text.value;
  const count = length(text);
  const limit = state.limits.text;
  ui.count.textContent = `${count} / ${limit}`;
  ui.count.classList.toggle("over", count > limit);
  ui.count.classList.toggle("near", count <= limit && count > limit * 0.9);
  const connected = state.transport !== null && state.transport.state === "open" && state.joined;
  ui.send.disabled = !connected;
  ui.text.setAttribute("aria-invalid", count > limit ? "true" : "false");
}

function submitMessage() {
  const text = ui.text.value;
  const connected = state.transport !== null && state.transport.state === "open" && state.joined;
  if (!connected) return;
  if (text.trim() === "") {
    ui.composerError.textContent = "Write something before sending.";
    return;
  }
  if (length(text) > state.limits.text) {
    ui.composerError.textContent = `That message is too long: at most ${state.limits.text} characters.`;
    return;
  }
  if (TEXT_CONTROL.test(text)) {
    ui.composerError.textContent =
      "That message contains control or text-direction characters that cannot be sent.";
    return;
  }
  if (Date.now() < state.blockedUntil) {
    const wait = (state.blockedUntil - Date.now()) / 1000;
    ui.composerError.textContent = `You are sending too fast. Wait ${wait.toFixed(1)} s, then send again.`;
    return;
  }
  if (state.transport.send({ type: "say", text })) {
    state.pending.push(text);
    ui.text.value = "";
    ui.composerError.textContent = "";
    log.scrollToBottom();
    updateComposer();
  }
}

// ---- Events ------------------------------------------------------------------

ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = ui.joinName.value.trim();
  const avatarUrl = ui.joinAvatar.value.trim();
  const problem = validateJoin(name, avatarUrl);
  if (problem) {
    showJoin(problem);
    return;
  }
  join(name, avatarUrl, ui.joinPassword.value);
  ui.joinPassword.value = "";
});
ui.joinName.addEventListener("input", updatePreview);
ui.joinAvatar.addEventListener("change", updatePreview);
ui.joinAvatar.addEventListener("input", updatePreview);

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  submitMessage();
});
ui.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    submitMessage();
  }
});
ui.text.addEventListener("input", () => {
  ui.composerError.textContent = "";
  updateComposer();
  typingSender.input(ui.text.value);
});

// The notification settings close like a menu: a click elsewhere, or Escape.
document.addEventListener("click", (event) => {
  if (ui.settings.open && !ui.settings.contains(event.target)) ui.settings.open = false;
});
ui.settings.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && ui.settings.open) {
    ui.settings.open = false;
    ui.settings.querySelector("summary").focus();
  }
});

ui.retry.addEventListener("click", () => state.transport?.reconnectNow());
ui.leave.addEventListener("click", () => leave());

document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    // What arrives from now on is new since the reader left.
    if (state.joined || state.transport) state.away = { after: log.lastId, placed: false, settle: false };
    return;
  }
  state.unread = 0;
  updateTitle();
  if (state.away) {
    state.away.settle = true;
    // Still connected: everything that came meanwhile is in. Otherwise the resume
    // brings the rest, and settles it (onWelcome, finishCatchUp).
    if (state.joined && !state.catchUp) settleAway();
  }
  // A phone suspends background tabs: coming back should not wait out a backoff.
  state.transport?.reconnectNow();
});
window.addEventListener("online", () => state.transport?.reconnectNow());
if (window.isSecureContext && "serviceWorker" in navigator) {
  // The service worker passes on a click on one of the page's notifications.
  navigator.serviceWorker.addEventListener("message", (event) => {
    if (event.data && event.data.type === "focus-message") focusMessage(event.data.id);
  });
}
window.addEventListener("pageshow", (event) => {
  if (event.persisted && state.transport && state.transport.state !== "stopped") {
    state.transport.start();
  }
});

// ---- Start -------------------------------------------------------------------

const wide = window.matchMedia("(min-width: 800px)");
ui.onlineDetails.open = wide.matches;
wide.addEventListener("change", () => {
  ui.onlineDetails.open = wide.matches;
});

ui.joinName.value = recall(STORE_NAME);
ui.joinAvatar.value = recall(STORE_AVATAR);
updatePreview();
updateComposer();
// Fetched while the socket connects; a refusal of the join waits for it so the
// message can name the site's limits.
const siteLoaded = loadSite();
// A page opened from a notification (no window was left) shows that message.
const opened = /^#message-(\d+)$/u.exec(location.hash);
if (opened) state.focusId = Number(opened[1]);
// Started as an installed app (from the home screen): straight into the room.
const standalone = window.matchMedia("(display-mode: standalone)").matches;
if (ui.joinName.value && (standalone || recall(SESSION_JOINED, sessionStorage))) {
  join(ui.joinName.value, ui.joinAvatar.value);
} else {
  showJoin();
}
siteLoaded.then((banned) => {
  if (banned !== null) leave(banned);
});
