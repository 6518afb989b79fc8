// pichat's service worker: the page's own files, cached under the version of the
// daemon that served them, so the page opens when the Pi is unreachable.
//
// The daemon writes its version (and a digest of the document root) into VERSION
// when it serves this file, so an upgrade changes this script's bytes: the browser
// installs the new worker on the next visit, which fetches every file into a cache
// of its own. The new worker waits until the page says it is safe to switch (it
// reloads then), so a page never runs one version's HTML with another's scripts.

const VERSION = "__PICHAT_VERSION__";
const CACHE = `pichat-${VERSION}`;
const CACHE_PREFIX = "pichat-";
// Relative to this script, i.e. to the page: served cache first.
const PAGE_FILES = [
  "./",
  "style.css",
  "favicon.svg",
  "js/app.js",
  "js/mentions.js",
  "js/moderation.js",
  "js/notify.js",
  "js/pwa.js",
  "js/transport.js",
  "js/typing.js",
  "js/view.js",
  "icons/apple-touch-icon.png",
  "icons/icon-192.png",
  "icons/icon-512.png",
  "icons/icon.svg",
  "icons/maskable-512.png",
];
// What the daemon answers per site and may change without an upgrade (the title):
// fetched first, the last answer kept for when the Pi cannot be reached.
const LIVE_FILES = ["site.json", "manifest.webmanifest"];

const scopePath = () => new URL(self.registration.scope).pathname;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) =>
      // "reload": straight from the daemon, never a copy the HTTP cache kept from before.
      cache.addAll([...PAGE_FILES, ...LIVE_FILES].map((url) => new Request(url, { cache: "reload" }))),
    ),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith(CACHE_PREFIX) && name !== CACHE) await caches.delete(name);
      }
      // The first visit is controlled at once, so it too opens offline next time.
      await self.clients.claim();
    })(),
  );
});

self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "activate") self.skipWaiting();
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith(scopePath())) return;
  const path = url.pathname.slice(scopePath().length);
  if (request.mode === "navigate") {
    if (path === "" || path === "index.html") event.respondWith(cacheFirst(request, "./"));
    return;
  }
  if (LIVE_FILES.includes(path)) event.respondWith(networkFirst(request, path));
  else if (PAGE_FILES.includes(path)) event.respondWith(cacheFirst(request, path));
});

async function cacheFirst(request, key) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(key);
  return cached || fetch(request);
}

async function networkFirst(request, key) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(key, response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(key);
    if (cached) return cached;
    throw error;
  }
}

// A notification the page showed (a mention): focus the page at that message.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(focusMessage(event.notification.data));
});

async function focusMessage(data) {
  const id = data && Number.isSafeInteger(data.id) ? data.id : null;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const page = windows.find((client) => client.focused) || windows[0];
  if (page) {
    page.postMessage({ type: "focus-message", id });
    try {
      await page.focus();
    } catch (error) {
      // Allowed only while handling a real click on the notification.
      console.info("pichat: cannot focus the page", error);
    }
    return;
  }
  await self.clients.openWindow(id === null ? "./" : `./#message-${id}`);
}
