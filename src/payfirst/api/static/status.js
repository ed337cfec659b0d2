// payfirst status page: reads /v1/status/stream (server-sent events, one `status` event a
// second) with the operator key from sessionStorage, and draws it. No build step.
"use strict";
(function () {
  const KEY = "payfirst.operatorKey";
  const POINTS = 300; // five minutes of one-second ticks
  const $ = (id) => document.getElementById(id);
  const state = { ticks: 0, charts: {}, series: {}, stream: null, retry: null };

  function key() { return sessionStorage.getItem(KEY); }

  function showLogin(message) {
    $("board").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    connection(false, "not connected");
    $("key").focus();
  }

  function showBoard() {
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    makeCharts();
  }

  function connection(on, text) {
    const badge = $("connection");
    badge.textContent = text;
    badge.className = "badge " + (on ? "on" : "off");
  }

  function forget(message) {
    sessionStorage.removeItem(KEY);
    if (state.stream) state.stream.abort();
    clearTimeout(state.retry);
    showLogin(message);
  }

  // -- the charts (uPlot) ----------------------------------------------------------------

  const CHARTS = {
    depth: [["pending", "#0969da"], ["processing", "#8250df"], ["sent", "#bf8700"], ["awaiting approval", "#57606a"]],
    rates: [["accepted/s", "#0969da"], ["completed/s", "#1a7f37"], ["failed/s", "#cf222e"]],
    latency: [["accept→sent p50", "#0969da"], ["accept→sent p95", "#54aeff"], ["accept→sent p99", "#b6e3ff"],
              ["sent→completed p50", "#1a7f37"], ["sent→completed p95", "#4ac26b"], ["sent→completed p99", "#aceebb"]],
  };

  const COUNTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];

  function makeCharts() {
    if (state.charts.depth || typeof uPlot === "undefined") return;
    for (const [name, lines] of Object.entries(CHARTS)) {
      const target = $("chart-" + name);
      state.series[name] = [[]].concat(lines.map(() => []));
      const opts = {
        width: Math.max(300, target.clientWidth),
        height: 220,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
        series: [{}].concat(lines.map(([label, stroke]) => ({ label, stroke, width: 2, spanGaps: true }))),
        axes: [{}, name === "depth" ? { size: 50, incrs: COUNTS } : { size: 50 }],
        legend: { live: false },
      };
      state.charts[name] = new uPlot(opts, state.series[name], target);
    }
    document.body.dataset.charts = "ready";
    window.addEventListener("resize", () => {
      for (const [name, chart] of Object.entries(state.charts)) {
        chart.setSize({ width: Math.max(300, $("chart-" + name).clientWidth), height: 220 });
      }
    });
  }

  function push(name, t, values) {
    const data = state.series[name];
    if (!data) return;
    data[0].push(t);
    values.forEach((v, i) => data[i + 1].push(v === null || v === undefined ? null : v));
    if (data[0].length > POINTS) data.forEach((column) => column.shift());
    state.charts[name].setData(data);
  }

  // -- one `status` event ----------------------------------------------------------------

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function fill(tbody, items, columns, render) {
    tbody.replaceChildren();
    if (!items.length) {
      const row = tbody.insertRow();
      const td = cell(row, "none", "empty");
      td.colSpan = columns;
      return;
    }
    for (const item of items) render(tbody.insertRow(), item);
  }

  function short(text) { return text && text.length > 14 ? text.slice(0, 8) + "…" + text.slice(-4) : text; }
  function when(iso) { return new Date(iso).toLocaleTimeString(); }

  function update(s) {
    state.ticks += 1;
    document.body.dataset.ticks = String(state.ticks);
    for (const [status, n] of Object.entries(s.queue)) {
      const el = $("depth-" + status);
      if (el) el.textContent = n;
    }
    for (const [kind, n] of Object.entries(s.last_minute)) $("minute-" + kind).textContent = n;
    $("stuck-count").textContent = s.stuck.count;
    $("stuck-after").textContent = s.stuck.after_s;
    $("rate-window").textContent = s.rate_window_s;
    $("updated").textContent = "updated " + when(s.at);

    const t = Date.parse(s.at) / 1000;
    const q = s.queue, r = s.rates, l = s.latency_s;
    push("depth", t, [q.pending, q.processing, q.sent, q.awaiting_approval]);
    push("rates", t, [r.accepted, r.completed, r.failed]);
    push("latency", t, [l.accept_to_sent.p50, l.accept_to_sent.p95, l.accept_to_sent.p99,
                        l.sent_to_completed.p50, l.sent_to_completed.p95, l.sent_to_completed.p99]);

    fill($("relayers"), s.relayers, 6, (row, x) => {
      cell(row, x.network);
      cell(row, x.address, "mono");
      cell(row, x.balance === null ? "unknown" : x.balance);
      cell(row, x.can_pay_gas ? "yes" : "no", x.can_pay_gas ? "yes" : "no");
      cell(row, x.stored_next_nonce);
      cell(row, x.nonce_gap, x.nonce_gap ? "no" : "");
    });
    fill($("stuck"), s.stuck.payments, 6, (row, p) => {
      cell(row, p.payment_id, "mono");
      cell(row, p.chain_id === null ? "default" : "eip155:" + p.chain_id);
      cell(row, when(p.sent_at));
      cell(row, short(p.tx_hash), "mono");
      cell(row, p.nonce);
      const td = cell(row, "");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "decide by the chain";
      button.dataset.payment = p.payment_id;
      button.addEventListener("click", () => decide(p.payment_id, button));
      td.appendChild(button);
    });
    fill($("failures"), s.failures, 6, (row, f) => {
      cell(row, when(f.at));
      cell(row, f.payment_id, "mono");
      cell(row, f.status);
      cell(row, f.error);
      cell(row, short(f.payer), "mono");
      cell(row, f.amount);
    });
  }

  // -- the stream: fetch, since EventSource cannot send an Authorization header -----------

  function reconnect(ms) {
    clearTimeout(state.retry);
    state.retry = setTimeout(connect, ms);
  }

  async function connect() {
    const k = key();
    if (!k) return showLogin();
    const abort = new AbortController();
    state.stream = abort;
    let answer;
    try {
      answer = await fetch("/v1/status/stream", {
        headers: { Authorization: "Bearer " + k, Accept: "text/event-stream" },
        cache: "no-store",
        signal: abort.signal,
      });
    } catch (e) {
      connection(false, "unreachable, retrying");
      return reconnect(2000);
    }
    if (answer.status === 401) return forget("That key is not valid.");
    if (answer.status === 403) return forget("That key is not an operator's key.");
    if (answer.status === 404) { connection(false, "status page disabled"); return; }
    if (!answer.ok || !answer.body) { connection(false, "busy (" + answer.status + "), retrying"); return reconnect(2000); }
    showBoard();
    connection(true, "live");
    const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handle(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
    }
    if (!key()) return;
    connection(false, "reconnecting");
    reconnect(1000);
  }

  function handle(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (!data.length) return;
    const body = JSON.parse(data.join("\n"));
    if (event === "status") {
      update(body);
      connection(true, "live");
    } else if (event === "error") {
      if (body.error === "unauthorized" || body.error === "forbidden") forget("The key stopped being valid.");
      else connection(false, body.message || body.error);
    }
  }

  // -- decide by the chain ---------------------------------------------------------------

  async function decide(paymentId, button) {
    button.disabled = true;
    const out = $("decide-result");
    out.textContent = "deciding " + paymentId + " by the chain…";
    try {
      const answer = await fetch("/v1/status/stuck/" + encodeURIComponent(paymentId) + "/decide", {
        method: "POST",
        headers: { Authorization: "Bearer " + key() },
        cache: "no-store",
      });
      const body = await answer.json();
      if (answer.ok) {
        out.textContent = paymentId + ": " + body.status + (body.error ? " (" + body.error + ")" : "") +
          (body.decided ? "" : " (not decided yet: its tx was re-sent and can still be mined)");
      } else {
        out.textContent = paymentId + ": " + (body.message || body.error);
      }
      out.dataset.outcome = answer.ok ? body.status : "error";
    } catch (e) {
      out.textContent = paymentId + ": " + e;
    } finally {
      button.disabled = false;
    }
  }

  // -- start -----------------------------------------------------------------------------

  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const k = $("key").value.trim();
    if (!k) return;
    sessionStorage.setItem(KEY, k);
    $("key").value = "";
    connect();
  });
  $("logout").addEventListener("click", () => forget());
  if (key()) connect(); else showLogin();
})();
