/* Request log: GET /admin/requests with the page's filters (model, backend, status, user, key,
   time range), the aggregates over every matching row, older pages by cursor, one row's detail.
   The filters live in the address (?model=...) so a filtered view can be linked to. */
document.addEventListener("alpine:init", () => {
  const FIELDS = ["model", "backend", "status", "user", "key", "since", "until"];

  const empty = () => Object.fromEntries(FIELDS.map((name) => [name, ""]));

  /* A datetime-local value is local time without a zone; the API takes ISO 8601. */
  const iso = (local) => (local ? new Date(local).toISOString() : "");

  Alpine.data("requestLog", () => ({
    filters: empty(),
    rows: [],
    totals: null,
    next: null,
    loaded: false,
    selected: null,
    problem: "",
    init() {
      const address = new URLSearchParams(location.search);
      for (const name of FIELDS) this.filters[name] = address.get(name) || "";
      this.load(false);
    },
    ms(value) {
      return value === null || value === undefined ? "–" : ui.fmt.number(value, 0) + " ms";
    },
    query(cursor) {
      const params = new URLSearchParams();
      for (const name of FIELDS) {
        const value = name === "since" || name === "until" ? iso(this.filters[name]) : this.filters[name];
        if (value) params.set(name, value);
      }
      if (cursor) {
        params.set("cursor", cursor);
        params.set("aggregates", "false");
      }
      return params;
    },
    async load(more) {
      try {
        const params = this.query(more ? this.next : null);
        const page = await ui.busy("Reading the request log", () =>
          ui.api("GET", "/admin/requests?" + params.toString()),
        );
        this.rows = more ? this.rows.concat(page.data) : page.data;
        if (!more) this.totals = page.aggregates || null;
        this.next = page.next_cursor || null;
        this.problem = "";
      } catch (err) {
        this.problem = "Could not read the request log: " + err.message;
      } finally {
        this.loaded = true;
      }
    },
    search() {
      const address = new URLSearchParams();
      for (const name of FIELDS) if (this.filters[name]) address.set(name, this.filters[name]);
      history.replaceState(null, "", location.pathname + (address.toString() ? "?" + address : ""));
      this.selected = null;
      this.load(false);
    },
    clear() {
      this.filters = empty();
      this.search();
    },
    more() {
      this.load(true);
    },
    show(row) {
      this.selected = row;
      this.$nextTick(() => this.$refs.detail.focus());
    },
  }));
});
