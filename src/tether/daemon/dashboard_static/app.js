// The dashboard (docs/dashboard.md): reads the daemon's JSON routes with the session cookie and
// draws them. No library, no build step. Every string from the daemon goes in as text, never as
// HTML. Requests carry no token: the cookie (HttpOnly, SameSite=Strict) is the session.
(function () {
  "use strict";
  const LOGIN = "/_tether/dashboard/login";
  const POLL_MS = 2000;
  const WINDOW_S = 600;
  const SVG = "http://www.w3.org/2000/svg";
  const calls = new Map();  // id -> record
  let usage = {series: []};
  let events = [];
  let lastEvent = 0;
  let callsStream = null;
  let outputStream = null;
  let selected = null;

  // -- helpers ---------------------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value; else node.setAttribute(key, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  function seconds(s) {
    if (s === null || s === undefined) return "";
    if (s < 1) return (s * 1000).toFixed(1) + " ms";
    if (s < 120) return s.toFixed(2) + " s";
    if (s < 7200) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    if (s < 172800) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function clock(t) { return new Date(t * 1000).toLocaleTimeString([], {hour12: false}); }

  function problem(text) {
    const p = $("problem");
    p.textContent = text || "";
    p.hidden = !text;
  }

  async function api(path) {
    const resp = await fetch(path, {credentials: "same-origin", cache: "no-store"});
    if (resp.status === 401) { location.replace(LOGIN); throw new Error("logged out"); }
    if (!resp.ok) throw new Error(path + ": " + resp.status);
    return resp.json();
  }

  // Newline-delimited JSON from a follow route, each object to onEvent, until the stream ends.
  async function follow(path, controller, onEvent) {
    const resp = await fetch(path, {credentials: "same-origin", cache: "no-store", signal: controller.signal});
    if (resp.status === 401) { location.replace(LOGIN); return; }
    if (!resp.ok) throw new Error(path + ": " + resp.status);
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, cut);
        buffered = buffered.slice(cut + 1);
        if (line) onEvent(JSON.parse(line));
      }
    }
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  // -- overview, nodes, workers, services --------------------------------------------------------
  function renderOverview(status, nodes) {
    $("cluster").textContent = status.cluster || "";
    document.title = "tether: " + (status.cluster || "dashboard");
    const envs = Object.values(status.envs || {});
    const facts = [
      ["version", "tether " + status.tether + " (protocol " + status.protocol + ")"],
      ["uptime", seconds(Date.now() / 1000 - status.started)],
      ["nodes", String(1 + nodes.length)],
      ["workers", String(envs.filter(function (e) { return e.worker && e.worker.alive; }).length)],
      ["services", String(Object.keys(status.objects || {}).length)],
      ["recording", !status.recording ? "off" : status.recording.error ? "stopped: " + status.recording.error
        : status.recording.enabled ? "on" : status.recording.paused ? "paused (tether calls --resume)" : "off"],
    ];
    const dl = $("overview");
    dl.replaceChildren();
    for (const [key, value] of facts) dl.append(el("dt", {text: key}), el("dd", {text: value}));
  }

  function renderNodes(status, nodes) {
    const rows = [el("tr", {}, [el("td", {text: "0 (head)"}), el("td", {text: "this daemon"}),
      el("td", {text: ""}), el("td", {text: "pid " + status.pid}), el("td", {text: ""})])];
    for (const n of nodes) {
      rows.push(el("tr", {}, [el("td", {text: String(n.index)}), el("td", {text: n.host}),
        el("td", {text: String(n.port)}), el("td", {text: n.label || ""}), el("td", {text: n.tls ? "yes" : "no"})]));
    }
    fill($("nodes").tBodies[0], rows);
  }

  function sparkline(points, index, cls, format) {
    const width = 160, height = 32;
    const box = svg("svg", {class: "spark " + cls, width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img"});
    const now = Date.now() / 1000;
    // the samples' own span (a young worker's fill the box), at most the window
    const span = points.length ? Math.min(WINDOW_S, Math.max(30, now - points[0][0])) : WINDOW_S;
    const max = Math.max(1, ...points.map(function (p) { return p[index]; }));
    const coords = points.map(function (p) {
      const x = width * (1 - (now - p[0]) / span);
      const y = height - 2 - (height - 4) * (p[index] / max);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    const line = svg("polyline", {points: coords.join(" "), fill: "none"});
    box.append(line);
    const title = svg("title");
    title.textContent = points.length ? "now " + format(points[points.length - 1][index]) + ", max " + format(max) : "no samples yet";
    box.append(title);
    const last = points.length ? format(points[points.length - 1][index]) : "";
    return el("div", {class: "chart"}, [box, el("span", {text: last})]);
  }

  function renderWorkers(status) {
    const rows = [];
    for (const [name, env] of Object.entries(status.envs || {})) {
      const w = env.worker;
      const series = usage.series.filter(function (s) { return s.env === name && w && s.pid === w.pid; });
      const points = series.length ? series[0].points : [];
      rows.push(el("tr", {"data-env": name}, [
        el("td", {text: name}),
        el("td", {text: w ? "pid " + w.pid : "none"}),
        el("td", {text: w ? (w.alive ? "alive" : "dead") : "not started"}),
        el("td", {text: w ? String(w.in_flight) : ""}),
        el("td", {}, [sparkline(points, 1, "spark-cpu", function (v) { return v.toFixed(0) + " %"; })]),
        el("td", {}, [sparkline(points, 2, "spark-mem", bytes)]),
      ]));
    }
    fill($("workers").tBodies[0], rows);
  }

  function renderServices(keys) {
    const rows = keys.map(function (k) {
      const name = el("a", {href: "#", text: k.name, "data-service": k.name});
      name.addEventListener("click", function (event) {
        event.preventDefault();
        $("filter-service").value = k.name;
        startCalls();
      });
      return el("tr", {"data-service": k.name}, [el("td", {}, [name]), el("td", {text: k.kind}),
        el("td", {text: k.type || ""}), el("td", {text: k.env}), el("td", {text: String(k.node)})]);
    });
    fill($("services").tBodies[0], rows);
    const select = $("filter-service");
    const have = new Set(Array.from(select.options).map(function (o) { return o.value; }));
    for (const k of keys) if (!have.has(k.name)) select.append(el("option", {value: k.name, text: k.name}));
  }

  // -- timeline --------------------------------------------------------------------------------
  function renderTimeline() {
    const width = 1000, height = 40;
    const now = Date.now() / 1000;
    const box = svg("svg", {class: "timeline", viewBox: "0 0 " + width + " " + height, preserveAspectRatio: "none"});
    box.append(svg("line", {x1: 0, y1: height / 2, x2: width, y2: height / 2, class: "axis"}));
    const shown = events.filter(function (e) { return e.t >= now - WINDOW_S; });
    // the events' own span (at least a minute, at most the window); OOM kills and climbs on top
    const span = shown.length ? Math.min(WINDOW_S, Math.max(60, 1.05 * (now - shown[0].t))) : WINDOW_S;
    const top = {oom_kill: 2, climb: 1};
    shown.sort(function (a, b) { return (top[a.kind] || 0) - (top[b.kind] || 0); });
    $("span").textContent = "(last " + Math.max(1, Math.round(span / 60)) + " min)";
    for (const e of shown) {
      const x = 8 + (width - 16) * (1 - (now - e.t) / span);
      const mark = svg("rect", {x: (x - 3).toFixed(1), y: 4, width: 6, height: height - 8, class: "mark kind-" + e.kind});
      const title = svg("title");
      title.textContent = clock(e.t) + " " + e.kind + ": " + e.message;
      mark.append(title);
      box.append(mark);
    }
    $("timeline").replaceChildren(box);
    const items = events.slice(-20).reverse().map(function (e) {
      return el("li", {class: "kind-" + e.kind}, [el("time", {text: clock(e.t)}), " ",
        el("b", {text: e.kind.replace(/_/g, " ")}), " ", e.message]);
    });
    $("events").replaceChildren(...items);
  }

  // -- calls -----------------------------------------------------------------------------------
  let pending = false;
  function renderCalls() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () {
      pending = false;
      const rows = Array.from(calls.values()).sort(function (a, b) { return b.started - a.started; }).slice(0, 200);
      fill($("calls").tBodies[0], rows.map(callRow));
    });
  }

  function callRow(c) {
    const caller = c.caller && c.caller.host ? (c.caller.user || "?") + "@" + c.caller.host + ":" + c.caller.pid : "";
    const error = c.error_type ? c.error_type + ": " + (c.error_message || "") : "";
    const row = el("tr", {"data-call": c.id, class: "call outcome-" + c.outcome + (c.id === selected ? " selected" : "")}, [
      el("td", {text: clock(c.started)}), el("td", {text: c.object}), el("td", {text: c.method}),
      el("td", {}, [el("span", {class: "badge outcome outcome-" + c.outcome, text: c.outcome.replace(/_/g, " ")})]),
      el("td", {text: seconds(c.duration)}), el("td", {text: bytes(c.peak_memory)}),
      el("td", {text: caller}), el("td", {class: "message", text: error, title: error}),
    ]);
    row.addEventListener("click", function () { showOutput(c.id); });
    return row;
  }

  function callsQuery() {
    const params = new URLSearchParams({follow: "1", limit: "200"});
    const service = $("filter-service").value;
    const outcome = $("filter-outcome").value;
    if (service) params.append("service", service);
    if (outcome === "failed") params.append("failed", "1"); else if (outcome) params.append("outcome", outcome);
    return "/_tether/calls?" + params.toString();
  }

  function startCalls() {
    if (callsStream) callsStream.abort();
    const controller = callsStream = new AbortController();
    calls.clear();
    renderCalls();
    const live = $("live");
    live.textContent = "connecting";
    live.className = "badge";
    follow(callsQuery(), controller, function (event) {
      if (event.call) {
        calls.set(event.call.id, event.call);
        if (event.call.id === selected) $("output-state").textContent = event.call.outcome;
        renderCalls();
      } else if (event.event === "dropped") {
        setTimeout(startCalls, 0);  // events were lost: start again from a listing
      }
      live.textContent = "live";
      live.className = "badge live";
    }).then(function () { return "ended"; }, function (err) { return err.name === "AbortError" ? null : String(err); })
      .then(function (why) {
        if (why === null || controller !== callsStream) return;
        live.textContent = "reconnecting";
        live.className = "badge";
        setTimeout(function () { if (controller === callsStream) startCalls(); }, POLL_MS);
      });
  }

  function showOutput(id) {
    if (outputStream) outputStream.abort();
    const controller = outputStream = new AbortController();
    selected = id;
    renderCalls();
    $("output-section").hidden = false;
    $("output-call").textContent = id;
    const state = $("output-state");
    state.textContent = calls.has(id) ? calls.get(id).outcome : "";
    const pre = $("output");
    pre.replaceChildren();
    follow("/_tether/calls/" + encodeURIComponent(id) + "/output?follow=1", controller, function (event) {
      if (event.event === "line") {
        const text = event.text.endsWith("\n") ? event.text : event.text + "\n";
        pre.append(event.stream === "err" ? el("span", {class: "stderr", text: text}) : document.createTextNode(text));
        pre.scrollTop = pre.scrollHeight;
      } else if (event.event === "dropped") {
        pre.append(el("span", {class: "note", text: "(" + event.lines + " earlier lines dropped)\n"}));
      } else if (event.event === "end") {
        state.textContent = event.outcome;
        state.className = "badge outcome outcome-" + event.outcome;
      }
    }).catch(function (err) {
      if (err.name !== "AbortError") pre.append(el("span", {class: "note", text: "(" + err + ")\n"}));
    });
  }

  // -- polling ---------------------------------------------------------------------------------
  async function refresh() {
    try {
      const [status, nodes, keys, use, news] = await Promise.all([
        api("/_tether/status"), api("/_tether/nodes"), api("/_tether/keys"), api("/_tether/usage"),
        api("/_tether/events?after=" + lastEvent),
      ]);
      usage = use;
      events = events.concat(news.events).slice(-500);
      if (news.events.length) lastEvent = news.events[news.events.length - 1].seq;
      renderOverview(status, nodes.nodes);
      renderNodes(status, nodes.nodes);
      renderWorkers(status);
      renderServices(keys);
      renderTimeline();
      problem(null);
    } catch (err) {
      if (String(err).indexOf("logged out") < 0) problem("cannot reach the daemon: " + err);
    }
  }

  async function start() {
    await window.tetherLogin;
    $("filter-service").addEventListener("change", startCalls);
    $("filter-outcome").addEventListener("change", startCalls);
    $("logout").addEventListener("submit", async function (event) {
      event.preventDefault();
      await fetch("/_tether/dashboard/logout", {method: "POST", credentials: "same-origin"});
      location.replace(LOGIN);
    });
    await refresh();
    startCalls();
    setInterval(refresh, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
