/* The login form: POST /auth/login (JSON), then on to the page that sent us here. */
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const problem = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    const body = { username: form.username.value.trim(), password: form.password.value };
    if (!body.username || !body.password) {
      problem.textContent = "Enter your user name and password.";
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await ui.busy("Signing in", () => ui.api("POST", "/auth/login", body));
      location.assign(form.dataset.next || "/ui");
    } catch (err) {
      problem.textContent = err.message;
      form.password.focus();
    } finally {
      button.disabled = false;
    }
  });
});
