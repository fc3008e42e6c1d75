/* Dashboard: engine (GET /v1/queue/stats) and pool (GET /admin/models/status) state every 2 s,
   and the recent failed requests of the audit log (GET /admin/requests?status=error). */
document.addEventListener("alpine:init", () => {
  Alpine.data("dashboard", () => ({
    engine: null,
    pool: null,
    errors: [],
    errorsLoaded: false,
    updated: "",
    problem: "",
    init() {
      this.stop = ui.poll(() => this.refresh(), 2000);
    },
    destroy() {
      this.stop();
    },
    async refresh() {
      // Apart: the audit log failing (the store not open yet) leaves the engine state shown.
      const [state, log] = await Promise.allSettled([
        Promise.all([ui.api("GET", "/v1/queue/stats"), ui.api("GET", "/admin/models/status")]),
        ui.api("GET", "/admin/requests?status=error&limit=10&aggregates=false"),
      ]);
      if (state.status === "fulfilled") [this.engine, this.pool] = state.value;
      if (log.status === "fulfilled") {
        this.errors = log.value.data;
        this.errorsLoaded = true;
      }
      const failed = [state, log].filter((r) => r.status === "rejected").map((r) => r.reason.message);
      this.problem = failed.join("; ");
      if (!failed.length) this.updated = new Date().toLocaleTimeString();
    },
  }));
});
