/* Models: every servable model with its badges (GET /admin/models), load / pin / unpin /
   unload (POST /admin/models/...), and the pool limits (GET/PUT/DELETE /admin/pool/limits).
   The list refreshes every 3 s, so loads started elsewhere and idle unloads show up. */
document.addEventListener("alpine:init", () => {
  const LIMIT_FIELDS = ["max_models", "max_memory_gb", "memory_limit_pct", "keep_alive_s"];
  const ACTIONS = {
    load: (id) => "/admin/models/load/" + id,
    pin: (id) => "/admin/models/pin/" + id,
    unpin: (id) => "/admin/models/unpin/" + id,
    unload: (id) => "/admin/models/unload/" + id,
  };
  const DONE = { load: "loaded and pinned", pin: "pinned", unpin: "unpinned", unload: "unloaded" };

  Alpine.data("modelsPage", () => ({
    models: [],
    loaded: false,
    unavailable: [],
    budget: null,
    limits: Object.fromEntries(LIMIT_FIELDS.map((name) => [name, ""])),
    limitsInfo: null,
    overridden: false,
    overLimits: "",
    working: {},
    problem: "",
    init() {
      this.stop = ui.poll(() => this.refresh(), 3000);
      this.readLimits();
      window.addEventListener("models-changed", () => this.refresh());
    },
    destroy() {
      this.stop();
    },
    async refresh() {
      try {
        const listing = await ui.api("GET", "/admin/models");
        this.models = listing.data;
        this.loaded = true;
        this.unavailable = listing.unavailable || [];
        this.budget = listing.budget;
        this.overLimits = listing.budget ? listing.budget.over_limits || "" : "";
        this.problem = "";
      } catch (err) {
        this.problem = "Could not list the models: " + err.message;
      }
    },
    count(n) {
      if (!n) return "–";
      for (const [size, unit] of [[1e9, "B"], [1e6, "M"], [1e3, "K"]]) {
        if (n >= size) return (n / size).toFixed(n >= 10 * size ? 0 : 1) + unit;
      }
      return String(n);
    },
    stateOf(model) {
      const r = model.residency;
      if (!r.loaded) return r.state === "loading" ? "loading…" : "not loaded";
      const parts = [r.pinned ? "loaded, pinned" : "loaded"];
      if (r.in_flight) parts.push(r.in_flight + " in flight");
      return parts.join(", ");
    },
    budgetLine() {
      const b = this.budget;
      if (!b) return "";
      const parts = ["In use: " + ui.fmt.bytes(b.used_bytes)];
      parts.push(b.max_memory_bytes ? "budget " + ui.fmt.bytes(b.max_memory_bytes) : "no memory budget");
      if (b.max_models) parts.push("at most " + b.max_models + " models");
      return parts.join(" · ");
    },
    async act(model, action, label) {
      this.working = { ...this.working, [model.id]: true };

      // Loads take seconds to minutes: the list shows "loading…" meanwhile (polled).
      const path = ACTIONS[action](encodeURIComponent(model.id).replace(/%2F/g, "/"));
      await ui.act(label, () => ui.api("POST", path), model.id + " " + DONE[action]);
      this.working = { ...this.working, [model.id]: false };
      await this.refresh();
    },
    limitsSource() {
      const info = this.limitsInfo;
      if (!info) return "";
      if (!info.override) return "Now: the start-up flags.";
      const who = info.override.updated_by ? " by " + info.override.updated_by : "";
      return "Now: changed here" + who + " (kept across restarts).";
    },
    showLimits(info) {
      this.limitsInfo = info;
      this.overridden = Boolean(info.override);
      for (const name of LIMIT_FIELDS) {
        const value = info.effective[name];
        this.limits[name] = value === null || value === undefined ? "" : String(value);
      }
      this.overLimits = info.over_limits || "";
    },
    async readLimits() {
      try {
        this.showLimits(await ui.api("GET", "/admin/pool/limits"));
      } catch (err) {
        this.problem = "Could not read the pool limits: " + err.message;
      }
    },
    async saveLimits() {
      const body = Object.fromEntries(LIMIT_FIELDS.map((name) => [name, ui.fmt.optionalNumber(this.limits[name])]));
      let reply = null;
      const ok = await ui.act("Applying the limits", async () => (reply = await ui.api("PUT", "/admin/pool/limits", body)), (r) =>
        r && r.evicted && r.evicted.length ? "Limits applied; unloaded " + r.evicted.join(", ") : "Limits applied",
      );
      if (ok && reply) this.showLimits(reply);
      await this.refresh();
    },
    async resetLimits() {
      let reply = null;
      const ok = await ui.act("Going back to the start-up flags", async () => (reply = await ui.api("DELETE", "/admin/pool/limits")), "Limits back to the start-up flags");
      if (ok && reply) this.showLimits(reply);
      await this.refresh();
    },
  }));
});

/* Downloads from the Hugging Face hub (POST/GET/DELETE /admin/models/downloads...): progress
   of each running download arrives over its SSE feed (GET .../{id}/events); when one is done
   the catalog above is told to refresh (a "models-changed" event). */
document.addEventListener("alpine:init", () => {
  const ACTIVE = new Set(["queued", "downloading"]);
  const BASE = "/admin/models/downloads";

  Alpine.data("downloads", () => ({
    repo: "",
    revision: "",
    items: [],
    feeds: {},
    problem: "",
    async init() {
      try {
        const listing = await ui.api("GET", BASE);
        this.items = listing.data;
        for (const item of this.items) if (ACTIVE.has(item.state)) this.follow(item.id);
      } catch (err) {
        this.problem = "Could not list the downloads: " + err.message;
      }
    },
    destroy() {
      for (const feed of Object.values(this.feeds)) feed.close();
    },
    eta(seconds) {
      if (seconds === null || seconds === undefined) return "–";
      if (seconds < 60) return Math.ceil(seconds) + " s";
      return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
    },
    put(item) {
      const index = this.items.findIndex((known) => known.id === item.id);
      if (index === -1) this.items.unshift(item);
      else this.items[index] = item;
    },
    follow(id) {
      if (this.feeds[id]) return;
      const feed = new EventSource(BASE + "/" + encodeURIComponent(id) + "/events");
      this.feeds[id] = feed;
      feed.addEventListener("progress", (event) => {
        const item = JSON.parse(event.data);
        this.put(item);
        if (!ACTIVE.has(item.state)) this.unfollow(id, item);
      });
      // The feed ends when the download does; a broken feed falls back to one read.
      feed.onerror = async () => {
        this.unfollow(id, null);
        try {
          const item = await ui.api("GET", BASE + "/" + encodeURIComponent(id));
          this.put(item);
          if (ACTIVE.has(item.state)) setTimeout(() => this.follow(id), 1000);
        } catch (err) {
          this.problem = "Lost the progress of a download: " + err.message;
        }
      };
    },
    unfollow(id, item) {
      const feed = this.feeds[id];
      if (feed) feed.close();
      delete this.feeds[id];
      if (item && item.state === "done") {
        ui.notify(item.repo_id + " downloaded; it is served by that id", "ok");
        window.dispatchEvent(new CustomEvent("models-changed"));
      }
    },
    async start() {
      this.problem = "";
      if (!this.repo) {
        this.problem = "Enter a repository id such as owner/name.";
        return;
      }
      const body = { repo_id: this.repo };
      if (this.revision) body.revision = this.revision;
      try {
        const item = await ui.busy("Asking the hub for " + this.repo, () => ui.api("POST", BASE, body));
        this.put(item);
        this.follow(item.id);
        this.repo = "";
      } catch (err) {
        this.problem = "Could not start the download: " + err.message;
      }
    },
    async command(item, action) {
      const label = action === "cancel" ? "Cancelling " : "Resuming ";
      let reply = null;
      await ui.act(label + item.repo_id, async () => {
        reply = await ui.api("POST", BASE + "/" + encodeURIComponent(item.id) + "/" + action);
      });
      if (reply) {
        this.put(reply);
        if (ACTIVE.has(reply.state)) this.follow(reply.id);
      }
    },
    async forget(item) {
      const ok = await ui.act("Forgetting " + item.repo_id, () =>
        ui.api("DELETE", BASE + "/" + encodeURIComponent(item.id)),
      );
      if (ok) this.items = this.items.filter((known) => known.id !== item.id);
    },
  }));
});
