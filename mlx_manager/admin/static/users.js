/* Users & keys: GET/POST /admin/users, approve, disable/enable, PUT role; GET/POST/DELETE
   /admin/keys (a new key is in the POST's answer only, shown here once). */
document.addEventListener("alpine:init", () => {
  const blankKey = () => ({ name: "", user_id: "", models: "", rpm: "", tpm: "", expires_in_days: "", local_only: false });
  const blankUser = () => ({ username: "", password: "", role: "user" });

  Alpine.data("usersPage", () => ({
    users: [],
    keys: [],
    loaded: false,
    problem: "",
    issued: null,
    newKey: blankKey(),
    newUser: blankUser(),
    get pending() {
      return this.users.filter((user) => user.role === "pending" && !user.disabled);
    },
    userName(id) {
      const user = this.users.find((u) => u.id === id);
      return user ? user.username : "#" + id;
    },
    init() {
      this.load();
    },
    async load() {
      try {
        const [users, keys] = await Promise.all([ui.api("GET", "/admin/users"), ui.api("GET", "/admin/keys")]);
        this.users = users.data;
        this.keys = keys.data;
        this.loaded = true;
        this.problem = "";
      } catch (err) {
        this.problem = err.message;
      }
    },
    async change(label, method, path, body, done) {
      const ok = await ui.act(label, () => ui.api(method, path, body), done);
      await this.load();
      return ok;
    },
    approve(user) {
      return this.change(`Approving ${user.username}`, "POST", `/admin/users/${user.id}/approve`, undefined, `${user.username} approved`);
    },
    setDisabled(user, disabled) {
      const verb = disabled ? "disable" : "enable";
      return this.change(`${disabled ? "Disabling" : "Enabling"} ${user.username}`, "POST", `/admin/users/${user.id}/${verb}`, undefined, `${user.username} ${verb}d`);
    },
    setRole(user, role) {
      return this.change(`Making ${user.username} ${role}`, "PUT", `/admin/users/${user.id}/role`, { role }, `${user.username} is now ${role}`);
    },
    async createUser() {
      const body = { ...this.newUser };
      if (await this.change(`Adding ${body.username}`, "POST", "/admin/users", body, `${body.username} added`)) {
        this.newUser = blankUser();
      }
    },
    async createKey() {
      const form = this.newKey;
      const body = {
        name: form.name.trim(),
        user_id: form.user_id === "" ? null : Number(form.user_id),
        models: ui.fmt.list(form.models),
        rpm: ui.fmt.optionalNumber(form.rpm),
        tpm: ui.fmt.optionalNumber(form.tpm),
        expires_in_days: ui.fmt.optionalNumber(form.expires_in_days),
        local_only: Boolean(form.local_only),
      };
      let made = null;
      const ok = await ui.act("Creating the key", async () => (made = await ui.api("POST", "/admin/keys", body)));
      if (ok) {
        this.issued = made;
        this.newKey = blankKey();
        this.$nextTick(() => this.$refs.issued.focus());
      }
      await this.load();
    },
    async copyKey() {
      try {
        await navigator.clipboard.writeText(this.issued.key);
        ui.notify("Key copied", "ok");
      } catch (err) {
        ui.notify("Copy failed: select the key and copy it by hand");
      }
    },
    revoke(key) {
      const name = key.name || key.prefix;
      if (!confirm(`Revoke the key ${name}? Programs using it stop at once.`)) return;
      return this.change(`Revoking ${name}`, "DELETE", `/admin/keys/${key.id}`, undefined, `${name} revoked`);
    },
  }));
});
