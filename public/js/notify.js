// Notifications while the page is in the background: a system notification for a
// message that mentions you (or, if this device asks for it, for every message),
// and the unread count on the app's icon. Both are opt-in per device: permission is
// asked on the click that turns them on, never on load, and only in a secure context.

const STORE_MENTIONS = "pichat.notify.mentions";
const STORE_ALL = "pichat.notify.all";
const BODY_LENGTH = 160;

function recall(key) {
  try {
    return localStorage.getItem(key) === "1";
  } catch {
    return false;
  }
}

function remember(key, on) {
  try {
    if (on) localStorage.setItem(key, "1");
    else localStorage.removeItem(key);
  } catch {
    // Without storage the choice lasts for this visit.
  }
}

/** Whether this page can show system notifications at all. */
export function notificationsSupported() {
  return window.isSecureContext && "Notification" in window;
}

/** The unread count on the installed app's icon, where the platform has one. */
export function setBadge(count) {
  if (!window.isSecureContext) return;
  const call = count > 0 ? navigator.setAppBadge?.(count) : navigator.clearAppBadge?.();
  // Refused outside an installed app on some platforms: the title still counts.
  call?.catch?.(() => {});
}

export class Notifier {
  /**
   * @param {{mentions: HTMLInputElement, all: HTMLInputElement, hint: HTMLElement}} ui
   * @param {Promise<ServiceWorkerRegistration|null>} registration  shows notifications
   *   that outlive the page (Android allows no other kind); without one, `Notification`
   * @param {(id: number) => void} focus  shows the message a notification was about
   */
  constructor(ui, registration, focus) {
    this.ui = ui;
    this.registration = registration;
    this.focus = focus;
    this.supported = notificationsSupported();
    this.hintText = ui.hint.textContent;
    ui.mentions.checked = this.supported && recall(STORE_MENTIONS) && Notification.permission === "granted";
    ui.all.checked = this.supported && recall(STORE_ALL) && Notification.permission === "granted";
    ui.mentions.addEventListener("change", () => this.toggle(ui.mentions, STORE_MENTIONS));
    ui.all.addEventListener("change", () => this.toggle(ui.all, STORE_ALL));
  }

  async toggle(box, key) {
    if (!box.checked) {
      remember(key, false);
      return;
    }
    let permission = Notification.permission;
    // Asked here, on the click that turns notifications on, and nowhere else.
    if (permission === "default") permission = await Notification.requestPermission();
    if (permission !== "granted") {
      box.checked = false;
      remember(key, false);
      this.ui.hint.textContent =
        "Notifications are blocked for this page: allow them in the browser's site settings.";
      return;
    }
    this.ui.hint.textContent = this.hintText;
    remember(key, true);
  }

  /** A new message from someone else; `me` is true when it mentions you. */
  async message(message, me) {
    if (!this.supported || !document.hidden || Notification.permission !== "granted") return;
    if (!(this.ui.all.checked || (me && this.ui.mentions.checked))) return;
    const title = me ? `${message.name} mentioned you` : String(message.name);
    const text = String(message.text);
    const options = {
      body: text.length > BODY_LENGTH ? `${text.slice(0, BODY_LENGTH - 1)}…` : text,
      tag: `pichat-${message.id}`,
      icon: "icons/icon-192.png",
      badge: "icons/icon-192.png",
      data: { id: message.id },
    };
    try {
      const registration = await this.registration;
      if (registration && registration.active) {
        await registration.showNotification(title, options);
        return;
      }
      this.show(title, options, message.id);
    } catch (error) {
      // Permission taken back meanwhile, or the platform refused: the title still counts.
      console.warn("pichat: notification not shown", error);
    }
  }

  /** A notification without a service worker (desktop browsers allow these). */
  show(title, options, id) {
    const notification = new Notification(title, options);
    notification.addEventListener("click", () => {
      window.focus();
      notification.close();
      this.focus(id);
    });
  }
}
