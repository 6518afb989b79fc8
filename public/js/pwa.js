// The page as an installed app: the service worker (sw.js) that keeps the page's
// files for offline use, and switching to a new version only when that is safe.
// In a context that is not secure (plain http to anything but localhost) browsers
// offer no service worker: everything here is skipped and the page works as before.

/**
 * Register sw.js; returns its registration, or null where there is none.
 *
 * @param {() => boolean} safeToReload  whether the page may reload now to take a new
 *   version (nothing typed, nobody looking): the new worker waits until then.
 */
export async function registerWorker(safeToReload) {
  if (!window.isSecureContext || !("serviceWorker" in navigator)) return null;
  const workers = navigator.serviceWorker;
  let registration;
  try {
    registration = await workers.register("sw.js");
  } catch (error) {
    // A site without sw.js, or storage turned off: the page goes on without.
    console.info("pichat: no service worker", error);
    return null;
  }
  // The first worker takes control without a reload (the files it cached are the
  // ones this page runs); a later one means an upgrade: reload into it, once.
  let controlled = workers.controller !== null;
  workers.addEventListener("controllerchange", () => {
    if (controlled) location.reload();
    controlled = true;
  });
  const activate = () => {
    const waiting = registration.waiting;
    if (waiting && (!controlled || safeToReload())) waiting.postMessage({ type: "activate" });
  };
  registration.addEventListener("updatefound", () => {
    const installing = registration.installing;
    installing?.addEventListener("statechange", () => {
      if (installing.state === "installed") activate();
    });
  });
  document.addEventListener("visibilitychange", activate);
  activate();
  return registration;
}
