// "Run live": turns a chapter's code cells into editable cells that run on a local kernel.
//
// Served only by `make live` (scripts/live.py), which adds this file and an inline JSON
// config with the local Jupyter server's address to the pages; Thebe is vendored from npm
// and served from /_live/thebe/. The published book never loads any of it.
//
// The server's token comes from the URL that `make live` printed (#token=..., a fragment
// that is never sent to a server). It is kept in this origin's localStorage, so the other
// pages of the book find it, and removed from the address bar.
(function () {
  "use strict";

  const configElement = document.getElementById("densenet-live-config");
  if (!configElement) return;
  const config = JSON.parse(configElement.textContent);
  const TOKEN_KEY = "densenet-live-token";
  const fromUrl = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (fromUrl) {
    window.localStorage.setItem(TOKEN_KEY, fromUrl);
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  // Thebe 0.9's widget manager fetches require.js from a CDN before the first ipywidget
  // renders; hand it the copy that the book server vendored instead.
  const REQUIREJS_CDN = "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js";
  const originalFetch = window.fetch.bind(window);
  window.fetch = function (resource, options) {
    if (resource === REQUIREJS_CDN) resource = "/_live/requirejs/require.js";
    return originalFetch(resource, options);
  };

  function codeCells() {
    return Array.from(document.querySelectorAll("div.cell")).filter((cell) =>
      cell.querySelector(".cell_input pre"),
    );
  }

  function loadThebe() {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = "/_live/thebe/thebe.css";
    document.head.appendChild(css);
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/_live/thebe/index.js";
      script.onload = () => resolve(window.thebe);
      script.onerror = () => reject(new Error("could not load Thebe from /_live/thebe/"));
      document.head.appendChild(script);
    });
  }

  // One source placeholder and one output element per cell, in page order: Thebe pairs
  // the n-th source with the n-th output. The static output stays until the cell runs.
  function markCells(cells) {
    for (const cell of cells) {
      const input = cell.querySelector(".cell_input");
      const placeholder = document.createElement("pre");
      placeholder.setAttribute("data-live-source", "");
      placeholder.setAttribute("data-language", "python");
      placeholder.textContent = input.querySelector("pre").textContent.replace(/\n$/, "");
      input.replaceChildren(placeholder);
      let output = cell.querySelector(".cell_output");
      if (!output) {
        output = document.createElement("div");
        output.className = "cell_output docutils container";
        cell.appendChild(output);
      }
      output.setAttribute("data-live-output", "");
    }
  }

  function setState(state, text) {
    document.documentElement.dataset.live = state;
    const status = document.getElementById("live-status");
    if (status) status.textContent = text;
  }

  async function goLive(button) {
    const token = window.localStorage.getItem(TOKEN_KEY);
    if (!token) {
      setState("failed", "No token: open the address that `make live` printed");
      return;
    }
    button.disabled = true;
    setState("loading", "Loading Thebe…");
    try {
      const thebe = await loadThebe();
      // Thebe's progress messages while connecting; afterwards only a lost kernel.
      thebe.on("status", (_event, data) => {
        const state = document.documentElement.dataset.live;
        if (state === "connecting" && data.message) setState("connecting", data.message);
        if (state === "ready" && ["shutdown", "closed"].includes(data.status)) {
          setState("failed", "The kernel stopped: is `make live` still running?");
        }
      });
      thebe.on("error", (_event, data) => {
        if (document.documentElement.dataset.live !== "ready") return;
        if (["server-error", "session-error", "error"].includes(data.status)) {
          setState("failed", data.message);
        }
      });
      markCells(codeCells());
      const dark = document.documentElement.dataset.theme === "dark";
      setState("connecting", "Starting a kernel…");
      const { session } = await thebe.bootstrap({
        useBinder: false,
        useJupyterLite: false,
        requestKernel: true,
        selector: "[data-live-source]",
        outputSelector: "[data-live-output]",
        mountRunButton: true,
        mountRunAllButton: true,
        mountRestartButton: true,
        mountRestartAllButton: false, // Thebe 0.9's version runs all without restarting
        // No LaTeX typesetter: Thebe's default is MathJax 2 from a CDN.
        mathjaxUrl: "",
        savedSessionOptions: { enabled: false },
        serverSettings: {
          baseUrl: config.baseUrl,
          wsUrl: config.baseUrl.replace(/^http/, "ws"),
          token: token,
          appendToken: true,
        },
        kernelOptions: { kernelName: "python3", path: config.kernelPath },
        // (CodeMirror 5 options: Thebe passes them through.)
        codeMirrorConfig: {
          theme: dark ? "darcula" : "default",
          lineNumbers: false,
          lineWrapping: true,
        },
      });
      if (!session) throw new Error("the server gave no kernel");
      // The Chinese edition draws its figures in Chinese (densenet_edu.figure_text), as its
      // reader's notebooks do; the page's language says which edition this is.
      if ((document.documentElement.lang || "").startsWith("zh") && session.kernel) {
        await session.kernel.requestExecute({
          code: 'import os\nos.environ["DENSENET_EDU_LANGUAGE"] = "zh"',
          silent: true,
        }).done;
      }
      button.textContent = "Live";
      button.title = "The code cells run on your local kernel (shift-enter or 'run')";
      setState("ready", "Kernel ready: edit a cell, then shift-enter or 'run'");
    } catch (error) {
      console.warn("live:", error);
      const why = error.message || error;
      setState("failed", `Could not connect (is \`make live\` running? ${why})`);
      button.disabled = false;
    }
  }

  function mountButton() {
    if (codeCells().length === 0) return;
    const bar = document.querySelector(".article-header-buttons");
    const box = document.createElement("span");
    box.className = "live-box";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-sm live-button";
    button.title = "Run this page's code on your local Jupyter kernel";
    button.innerHTML = '<i class="fa-solid fa-play"></i> ';
    button.append("Run live");
    button.addEventListener("click", () => goLive(button));
    const status = document.createElement("span");
    status.id = "live-status";
    status.className = "live-status";
    status.setAttribute("role", "status");
    box.append(status, button);
    if (bar) bar.prepend(box);
    else document.body.prepend(box);
    setState("off", "");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", mountButton);
  } else {
    mountButton();
  }
})();
