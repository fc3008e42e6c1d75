/* Dashboard: the engine and pool state from GET /admin/models/status, every 2 s. */
document.addEventListener("alpine:init", () => {
  Alpine.data("dashboard", () => ({
    pool: null,
    problem: "",
    init() {
      this.stop = ui.poll(() => this.refresh(), 2000);
    },
    destroy() {
      this.stop();
    },
    async refresh() {
      try {
        this.pool = await ui.api("GET", "/admin/models/status");
        this.problem = "";
      } catch (err) {
        this.problem = err.message;
      }
    },
  }));
});
