/* MLX Manager admin UI: the helpers every page shares (window.ui).
 *
 * - ui.api(method, path, body): fetch JSON from this server's APIs. A signed-in write echoes
 *   the CSRF cookie in x-csrf-token (mlx_manager/api/auth.py); a refusal throws ui.ApiError
 *   whose message is the server's own words (either dialect's error shape), never a trace.
 * - ui.busy(label, work): the progress indicator while a long action runs.
 * - ui.notify(message, kind): a message in the status area (errors stay until dismissed).
 * - ui.act(label, work, done): busy + notify around an admin action; true when it worked.
 * - ui.poll(fn, ms): call fn every ms while the page is visible, never two at once.
 * - ui.csrfHeaders(method): the CSRF header for a write made with fetch directly (streams).
 */
(function () {
  "use strict";

  const CSRF_COOKIE = "mlxm_csrf";
  const CSRF_HEADER = "x-csrf-token";
  const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

  class ApiError extends Error {
    constructor(message, status, body) {
      super(message);
      this.name = "ApiError";
      this.status = status;
      this.body = body;
    }
  }

  function cookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    return "";
  }

  /* OpenAI's {"error": {"message"}} and Anthropic's {"type": "error", "error": {"message"}}
     both keep the words in error.message. */
  function errorMessage(status, statusText, body) {
    if (body && typeof body === "object") {
      const error = body.error;
      if (error && typeof error === "object" && typeof error.message === "string") return error.message;
      if (typeof error === "string") return error;
      if (typeof body.detail === "string") return body.detail;
    }
    return `the server answered ${status}${statusText ? " " + statusText : ""}`;
  }

  /* The CSRF header a signed-in write needs (empty for reads and for key/open callers). */
  function csrfHeaders(method) {
    const token = SAFE_METHODS.has(method.toUpperCase()) ? "" : cookie(CSRF_COOKIE);
    return token ? { [CSRF_HEADER]: token } : {};
  }

  function toLogin() {
    const here = location.pathname + location.search;
    location.assign("/ui/login?next=" + encodeURIComponent(here));
  }

  async function api(method, path, body) {
    method = method.toUpperCase();
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    Object.assign(headers, csrfHeaders(method));
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError("the server could not be reached: is it running?", 0, null);
    }
    const text = response.status === 204 ? "" : await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      // The session ended (expired, signed out elsewhere, role changed): sign in again.
      if (response.status === 401 && !path.startsWith("/auth/")) toLogin();
      throw new ApiError(errorMessage(response.status, response.statusText, data), response.status, data);
    }
    return data;
  }

  let busyCount = 0;
  async function busy(label, work) {
    const box = document.getElementById("busy");
    const text = document.getElementById("busy-label");
    busyCount += 1;
    if (box && text) {
      text.textContent = label + "…";
      box.hidden = false;
    }
    try {
      return await (typeof work === "function" ? work() : work);
    } finally {
      busyCount -= 1;
      if (box && busyCount === 0) box.hidden = true;
    }
  }

  function notify(message, kind) {
    kind = kind || "error";
    const area = document.getElementById("notices");
    if (!area) return;
    const item = document.createElement("div");
    item.className = "notice " + kind;
    item.setAttribute("role", kind === "error" ? "alert" : "status");
    const words = document.createElement("span");
    words.textContent = message;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "secondary";
    close.textContent = "Dismiss";
    close.setAttribute("aria-label", "Dismiss: " + message);
    close.addEventListener("click", () => item.remove());
    item.append(words, close);
    area.append(item);
    if (kind !== "error") setTimeout(() => item.remove(), 6000);
  }

  async function act(label, work, done) {
    try {
      const result = await busy(label, work);
      if (done) notify(typeof done === "function" ? done(result) : done, "ok");
      return true;
    } catch (err) {
      notify(label + ": " + (err instanceof ApiError ? err.message : String(err.message || err)));
      return false;
    }
  }

  function poll(fn, ms) {
    let running = false;
    let stopped = false;
    const tick = async () => {
      if (running || stopped || document.hidden) return;
      running = true;
      try {
        await fn();
      } finally {
        running = false;
      }
    };
    tick();
    const timer = setInterval(tick, ms);
    document.addEventListener("visibilitychange", tick);
    return () => {
      stopped = true;
      clearInterval(timer);
      document.removeEventListener("visibilitychange", tick);
    };
  }

  const UNITS = ["B", "KB", "MB", "GB", "TB"];
  const fmt = {
    bytes(n) {
      if (n === null || n === undefined) return "–";
      let value = Number(n);
      let unit = 0;
      while (Math.abs(value) >= 1000 && unit < UNITS.length - 1) {
        value /= 1000;
        unit += 1;
      }
      return (unit === 0 ? value.toFixed(0) : value.toFixed(1)) + " " + UNITS[unit];
    },
    number(n, digits) {
      if (n === null || n === undefined) return "–";
      return Number(n).toLocaleString("en", { maximumFractionDigits: digits === undefined ? 1 : digits });
    },
    percent(part, whole) {
      return whole ? ((100 * part) / whole).toFixed(0) + "%" : "–";
    },
    time(iso) {
      if (!iso) return "–";
      const when = new Date(iso);
      return isNaN(when) ? iso : when.toLocaleString();
    },
    /* "a, b" -> ["a", "b"]: list fields typed as text. */
    list(text) {
      return String(text || "").split(",").map((s) => s.trim()).filter(Boolean);
    },
    /* "" -> null, else a number (form fields whose absence means "no limit"). */
    optionalNumber(text) {
      const value = String(text === undefined || text === null ? "" : text).trim();
      return value === "" ? null : Number(value);
    },
  };

  async function logOut() {
    await act("Signing out", () => api("POST", "/auth/logout"));
    location.assign("/ui/login");
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll("[data-logout]")) {
      button.addEventListener("click", logOut);
    }
  });

  window.ui = { api, ApiError, busy, notify, act, poll, fmt, errorMessage, csrfHeaders };
})();
