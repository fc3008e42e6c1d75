/* Providers & routing: /admin/providers (keys write-only: the API shows the last four),
   /admin/routes (rules; config-file ones are read-only) and /admin/routes/explain. */
document.addEventListener("alpine:init", () => {
  const TIMEOUTS = { connect_s: 10, first_token_s: 300, idle_s: 120, total_s: 600, whole_answer_s: null };
  const blankProvider = () => ({
    editing: false, name: "", kind: "openai_compatible", base_url: "", api_key: "", remove_key: false,
    api_key_env: "", default_max_tokens: "", timeouts: { ...TIMEOUTS }, hint: null, check: false,
  });
  const blankRule = () => ({
    id: null, pattern: "", match: "exact", priority: 0, enabled: true, local_load_budget_s: "",
    targets: [{ provider: "local", model: "" }],
  });
  // A rule as the API takes it (PUT replaces it whole).
  const ruleBody = (rule) => ({
    pattern: String(rule.pattern).trim(),
    match: rule.match,
    priority: Number(rule.priority || 0),
    enabled: Boolean(rule.enabled),
    local_load_budget_s: ui.fmt.optionalNumber(rule.local_load_budget_s),
    targets: rule.targets.map((t) => ({ provider: t.provider, model: String(t.model || "").trim() || null })),
  });

  Alpine.data("routingPage", () => ({
    providers: [],
    routes: [],
    loaded: false,
    problem: "",
    providerForm: blankProvider(),
    ruleForm: blankRule(),
    explainName: "",
    explained: null,
    init() {
      this.load();
    },
    async load() {
      try {
        const [providers, routes] = await Promise.all([ui.api("GET", "/admin/providers"), ui.api("GET", "/admin/routes")]);
        this.providers = providers.data;
        this.routes = routes.data;
        this.loaded = true;
        this.problem = "";
      } catch (err) {
        this.problem = err.message;
      }
    },
    targetsText(targets) {
      return targets.map((t) => t.provider + (t.model ? " → " + t.model : "")).join(", then ");
    },
    keyText(provider) {
      if (provider.source === "builtin") return "–";
      if (provider.api_key_set) return "set (" + provider.api_key_hint + ")";
      return provider.api_key_env ? "from $" + provider.api_key_env : "none";
    },

    async explain() {
      const name = this.explainName.trim();
      if (!name) return;
      await ui.act(`Explaining ${name}`, async () => {
        this.explained = await ui.api("GET", "/admin/routes/explain?model=" + encodeURIComponent(name));
      });
    },

    resetRule() {
      this.ruleForm = blankRule();
    },
    editRule(rule) {
      this.ruleForm = {
        id: rule.id, pattern: rule.pattern, match: rule.match, priority: rule.priority, enabled: rule.enabled,
        local_load_budget_s: rule.local_load_budget_s ?? "",
        targets: rule.targets.map((t) => ({ provider: t.provider, model: t.model || "" })),
      };
      this.$nextTick(() => document.getElementById("rule-pattern").focus());
    },
    async saveRule() {
      const body = ruleBody(this.ruleForm);
      const adding = this.ruleForm.id === null;
      const ok = await ui.act(
        adding ? `Adding the rule ${body.pattern}` : `Saving the rule ${body.pattern}`,
        () => (adding ? ui.api("POST", "/admin/routes", body) : ui.api("PUT", `/admin/routes/${this.ruleForm.id}`, body)),
        `Rule ${body.pattern} ${adding ? "added" : "saved"}`,
      );
      if (ok) this.resetRule();
      await this.load();
    },
    async toggleRule(rule) {
      const body = { ...ruleBody(rule), enabled: !rule.enabled };
      await ui.act(`${body.enabled ? "Enabling" : "Disabling"} the rule ${rule.pattern}`,
        () => ui.api("PUT", `/admin/routes/${rule.id}`, body), `Rule ${rule.pattern} ${body.enabled ? "enabled" : "disabled"}`);
      await this.load();
    },
    async deleteRule(rule) {
      if (!confirm(`Delete the rule ${rule.pattern}?`)) return;
      await ui.act(`Deleting the rule ${rule.pattern}`, () => ui.api("DELETE", `/admin/routes/${rule.id}`), `Rule ${rule.pattern} deleted`);
      if (this.ruleForm.id === rule.id) this.resetRule();
      await this.load();
    },

    resetProvider() {
      this.providerForm = blankProvider();
    },
    editProvider(provider) {
      this.providerForm = {
        ...blankProvider(), editing: true, name: provider.name, kind: provider.kind, base_url: provider.base_url,
        api_key_env: provider.api_key_env || "", default_max_tokens: provider.default_max_tokens ?? "",
        timeouts: { ...TIMEOUTS, ...(provider.timeouts || {}) }, hint: provider.api_key_hint,
      };
      this.$nextTick(() => document.getElementById("provider-kind").focus());
    },
    async saveProvider() {
      const form = this.providerForm;
      const body = { kind: form.kind, base_url: form.base_url.trim() };
      if (form.api_key_env.trim()) body.api_key_env = form.api_key_env.trim();
      if (String(form.default_max_tokens).trim()) body.default_max_tokens = Number(form.default_max_tokens);
      // An empty field is no value (the server's default), never 0.
      body.timeouts = Object.fromEntries(
        Object.entries(form.timeouts).filter(([, v]) => v !== null && v !== "").map(([k, v]) => [k, Number(v)]),
      );
      // Write-only key: sent when typed; on an edit, absent keeps the stored one, null removes it.
      if (form.api_key) body.api_key = form.api_key;
      else if (form.editing && form.remove_key) body.api_key = null;
      const query = form.check ? "?check=true" : "";
      const name = form.name.trim();
      const ok = await ui.act(
        form.editing ? `Saving the provider ${name}` : `Adding the provider ${name}`,
        () => (form.editing
          ? ui.api("PUT", `/admin/providers/${encodeURIComponent(name)}${query}`, body)
          : ui.api("POST", `/admin/providers${query}`, { name, ...body })),
        `Provider ${name} ${form.editing ? "saved" : "added"}`,
      );
      if (ok) this.resetProvider();
      await this.load();
    },
    async deleteProvider(provider) {
      if (!confirm(`Delete the provider ${provider.name}?`)) return;
      await ui.act(`Deleting the provider ${provider.name}`,
        () => ui.api("DELETE", `/admin/providers/${encodeURIComponent(provider.name)}`), `Provider ${provider.name} deleted`);
      if (this.providerForm.name === provider.name) this.resetProvider();
      await this.load();
    },
    async checkProvider(provider) {
      let answer = null;
      const ok = await ui.act(`Checking ${provider.name}`, async () => {
        answer = await ui.api("POST", `/admin/providers/${encodeURIComponent(provider.name)}/check`);
      });
      if (!ok) return;
      if (answer.reachable) ui.notify(`${provider.name} answers`, "ok");
      else ui.notify(`${provider.name} does not answer: ${answer.problem}`);
    },
  }));
});
