/* Playground: chat with any served model or routed name through POST /v1/chat/completions,
   streamed (SSE read from fetch's body), with an optional image for vision models (sent as a
   data URL, the OpenAI image_url part). Shows who answered (x-mlx-manager-backend), whether
   data left the machine, time to first token and tokens per second (measured here, in the
   browser, from the stream's arrival times and the usage the server reports). */
document.addEventListener("alpine:init", () => {
  const MAX_IMAGE_BYTES = 8 * 1024 * 1024;

  /* Each complete SSE event's data lines, leaving a partial event in `buffer`. */
  function takeEvents(state) {
    const events = [];
    let end;
    while ((end = state.buffer.search(/\r?\n\r?\n/)) !== -1) {
      const block = state.buffer.slice(0, end);
      state.buffer = state.buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) events.push(data);
    }
    return events;
  }

  Alpine.data("playground", () => ({
    models: [],
    model: "",
    system: "",
    message: "",
    image: "",
    params: { max_tokens: 256, temperature: 0.7, top_p: 1 },
    turns: [],
    running: false,
    controller: null,
    problem: "",
    stats: { backend: "", left: "", ttft: null, tps: null, usage: null, finish: "" },
    async init() {
      const asked = new URLSearchParams(location.search).get("model");
      try {
        const listing = await ui.api("GET", "/v1/models");
        this.models = listing.data.map((card) => card.id);
      } catch (err) {
        this.problem = "Could not list the models: " + err.message;
      }
      this.model = asked || this.models[0] || "";
    },
    pick(event) {
      const file = event.target.files[0];
      this.image = "";
      if (!file) return;
      if (file.size > MAX_IMAGE_BYTES) {
        this.problem = "That image is larger than 8 MB; choose a smaller one.";
        event.target.value = "";
        return;
      }
      const reader = new FileReader();
      reader.onload = () => (this.image = String(reader.result));
      reader.onerror = () => (this.problem = "Could not read that image file.");
      reader.readAsDataURL(file);
    },
    wireMessages() {
      const messages = this.system.trim() ? [{ role: "system", content: this.system }] : [];
      for (const turn of this.turns) {
        if (turn.role === "user" && turn.image) {
          messages.push({
            role: "user",
            content: [
              { type: "text", text: turn.text },
              { type: "image_url", image_url: { url: turn.image } },
            ],
          });
        } else {
          messages.push({ role: turn.role, content: turn.text });
        }
      }
      return messages;
    },
    body() {
      const body = { model: this.model, messages: this.wireMessages(), stream: true, stream_options: { include_usage: true } };
      for (const [name, value] of Object.entries(this.params)) {
        if (value !== "" && value !== null && !Number.isNaN(value)) body[name] = value;
      }
      return body;
    },
    async send() {
      if (this.running) return;
      this.problem = "";
      if (!this.model) {
        this.problem = "Choose a model first.";
        return;
      }
      if (!this.message.trim() && !this.image) {
        this.problem = "Write a message (or choose an image) first.";
        return;
      }
      this.turns.push({ role: "user", text: this.message, image: this.image });
      this.message = "";
      this.image = "";
      this.$refs.image.value = "";
      const reply = { role: "assistant", text: "", reasoning: "" };
      const payload = this.body();
      this.turns.push(reply);
      const shown = this.turns[this.turns.length - 1]; // Alpine's reactive copy
      this.stats = { backend: "", left: "", ttft: null, tps: null, usage: null, finish: "" };
      this.running = true;
      this.controller = new AbortController();
      try {
        await ui.busy("Generating", () => this.stream(payload, shown));
      } catch (err) {
        if (err.name === "AbortError") this.stats.finish = "stopped here";
        else this.problem = err.message;
        if (!shown.text && !shown.reasoning) this.turns.pop();
      } finally {
        this.running = false;
        this.controller = null;
      }
    },
    async stream(payload, reply) {
      const started = performance.now();
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...ui.csrfHeaders("POST") },
        body: JSON.stringify(payload),
        signal: this.controller.signal,
      });
      this.stats.backend = response.headers.get("x-mlx-manager-backend") || "";
      this.stats.left = response.headers.get("x-mlx-manager-data-left-machine") || "";
      if (!response.ok) {
        let data = null;
        try {
          data = await response.json();
        } catch (err) {
          data = null;
        }
        throw new Error(ui.errorMessage(response.status, response.statusText, data));
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const state = { buffer: "" };
      let first = null;
      let last = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        state.buffer += decoder.decode(value, { stream: true });
        for (const data of takeEvents(state)) {
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message || "the stream ended with an error");
          if (chunk.usage) this.stats.usage = chunk.usage;
          for (const choice of chunk.choices || []) {
            const delta = choice.delta || {};
            const piece = (delta.content || "") + (delta.reasoning_content || "");
            if (piece) {
              last = performance.now();
              if (first === null) {
                first = last;
                this.stats.ttft = first - started;
              }
            }
            if (delta.content) reply.text += delta.content;
            if (delta.reasoning_content) reply.reasoning += delta.reasoning_content;
            if (choice.finish_reason) this.stats.finish = choice.finish_reason;
          }
        }
      }
      const generated = this.stats.usage ? this.stats.usage.completion_tokens : null;
      if (generated && first !== null && last > first && generated > 1) {
        this.stats.tps = ((generated - 1) * 1000) / (last - first); // the decode rate after the first token
      } else if (generated && last !== null && last > started) {
        // Every piece arrived in one read (a busy machine): the rate over the whole request.
        this.stats.tps = (generated * 1000) / (last - started);
      }
    },
    stop() {
      if (this.controller) this.controller.abort();
    },
    reset() {
      this.turns = [];
      this.problem = "";
    },
  }));
});
