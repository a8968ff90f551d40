// The overview's charts (uPlot): the last 15 minutes from the page, then a point a second
// from the websocket's snapshots. Per-member charts gain a series when a member appears.
"use strict";

(function () {
  const WINDOW_S = 15 * 60;
  const COLORS = ["#3451d1", "#d1345b", "#1f9d6b", "#d18f34", "#7a34d1", "#34a7d1", "#8a8f3c", "#d134b8"];
  const data = JSON.parse(document.getElementById("chart-data").textContent);

  // Pool-wide charts: one series per key of metrics.history's points.
  const POOL = {
    traffic: [["rps", "requests/s"], ["errors", "errors/s"]],
    latency: [["p50_s", "p50"], ["p95_s", "p95"], ["ttft_s", "first token"]],
    tokens: [["tokens", "tokens/s"]],
    load: [["inflight", "in flight"], ["queue", "waiting"]],
    prediction: [["predicted_s", "predicted"], ["waited_s", "real"]],
  };
  // Charts with one series per member (or GPU): key of resources' points.
  const PER_NAME = { cpu: "cpu", mem: "mem", gpu: "gpu", gpu_mem: "gpu_mem" };
  // Charts with one series per tenant (fair sharing): key of metrics.history's points.
  const PER_TENANT = { shares: "tenants", waiting: "waiting" };
  // ... and one series per member: completion tokens/s (metrics.history's by_member).
  const PER_MEMBER = { member_tokens: "by_member" };

  const charts = {};

  // Every chart spans the same 15 minutes, so they line up however much each has seen.
  const lastWindow = (u, min, max) => [max - WINDOW_S, max];

  function make(el, labels, columns, { points = false, filled = false } = {}) {
    const opts = {
      width: el.clientWidth || 480,
      height: 190,
      scales: { x: { time: true, range: lastWindow } },
      axes: [{ stroke: "#5b6577" }, { stroke: "#5b6577", size: 56 }],
      series: [{}, ...labels.map((label, i) => ({
        label, stroke: COLORS[i % COLORS.length], width: 1.5, ...(points ? { points: { show: true, size: 4 } } : {}),
        ...(filled ? { fill: COLORS[i % COLORS.length] + "99" } : {}),
      }))],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
    };
    el.replaceChildren();
    return new uPlot(opts, columns, el);
  }

  function trim(columns) {
    const cutoff = columns[0][columns[0].length - 1] - WINDOW_S;
    let drop = 0;
    while (drop < columns[0].length && columns[0][drop] <= cutoff) drop++;
    if (drop) for (const column of columns) column.splice(0, drop);
  }

  // --- pool-wide charts ------------------------------------------------------------------

  function poolChart(name, el) {
    const keys = POOL[name];
    const columns = [data.history.t.slice(), ...keys.map(([key]) => data.history[key].slice())];
    // Latency exists only in seconds that saw requests: dots, so a lone request still shows.
    const plot = make(el, keys.map(([, label]) => label), columns, { points: name === "latency" || name === "prediction" });
    const chart = { keys, columns, plot };
    chart.push = (point) => {
      if (columns[0].length && point.t <= columns[0][columns[0].length - 1]) return;
      columns[0].push(point.t);
      keys.forEach(([key], i) => columns[i + 1].push(point[key]));
      trim(columns);
      chart.plot.setData(columns);
    };
    // A whole answer's tokens are counted over the seconds it was generated in, once it
    // ends: the snapshot resends those seconds, and they are redrawn.
    chart.revise = (points) => {
      const at = keys.findIndex(([key]) => key === "tokens");
      if (at < 0) return;
      const first = columns[0][0];
      for (const p of points) {
        const i = columns[0].indexOf(p.t, Math.max(0, p.t - first - 1));
        if (i >= 0) columns[at + 1][i] = p.tokens;
      }
      chart.plot.setData(columns);
    };
    return chart;
  }

  // --- per-member charts -----------------------------------------------------------------

  // Stacked shares: series i is the share of tenants i, i+1, ... together, filled down to
  // the axis and drawn first, so the band each tenant's colour shows is its own share (%).
  function stack(names, points, key) {
    return names.map((_, i) => points.map((p) => {
      const row = p[key] || {};
      const total = names.reduce((sum, n) => sum + (row[n] || 0), 0);
      return total ? (100 * names.slice(i).reduce((sum, n) => sum + (row[n] || 0), 0)) / total : null;
    }));
  }

  // `missing`: the value of a name absent from a point (0 tokens, but no CPU reading).
  function namedChart(key, el, points, { stacked = false, empty = "", missing = null } = {}) {
    const chart = { el, points, names: [] };
    chart.draw = () => {
      const names = [...new Set(points.flatMap((p) => Object.keys(p[key] || {})))].sort();
      const values = stacked ? stack(names, points, key)
        : names.map((n) => points.map((p) => (p[key] || {})[n] ?? missing));
      const columns = [points.map((p) => p.t), ...values];
      if (!names.length) {
        const note = document.createElement("p");
        note.className = "muted empty-chart";
        note.textContent = el.dataset.empty || empty;
        el.replaceChildren(note);
        chart.plot = null;
      } else if (!chart.plot || names.join() !== chart.names.join()) {
        chart.plot = make(el, names, columns, { filled: stacked });
      } else {
        chart.plot.setData(columns);
      }
      chart.names = names;
      chart.columns = columns;
    };
    chart.revise = (revised) => {
      if (key !== "by_member") return;
      const byT = new Map(points.map((p) => [p.t, p]));
      for (const r of revised) if (byT.has(r.t)) byT.get(r.t).by_member = r.by_member;
      chart.draw();
    };
    chart.push = (point) => {
      if (!point || (points.length && point.t <= points[points.length - 1].t)) return;
      points.push(point);
      while (points.length && points[0].t <= point.t - WINDOW_S) points.shift();
      chart.draw();
    };
    chart.draw();
    return chart;
  }

  // The page's 15 minutes of metrics.history as points holding only `keys`.
  const historyPoints = (keys) => data.history.t.map((t, i) => Object.fromEntries([["t", t], ...keys.map((k) => [k, data.history[k][i]])]));

  for (const el of document.querySelectorAll("[data-chart]")) {
    const name = el.dataset.chart;
    if (POOL[name]) {
      charts[name] = poolChart(name, el);
    } else if (PER_TENANT[name]) {
      charts[name] = namedChart(PER_TENANT[name], el, historyPoints(["tenants", "waiting"]),
        { stacked: name === "shares", empty: "No tenant has been served or waited in the last 15 minutes." });
    } else if (PER_MEMBER[name]) {
      charts[name] = namedChart(PER_MEMBER[name], el, historyPoints(["by_member"]),
        { missing: 0, empty: "No member has generated tokens in the last 15 minutes." });
    } else {
      charts[name] = namedChart(PER_NAME[name], el, data.usage.slice(),
        { empty: "Only local members' processes are measured here; none runs yet." });
    }
  }

  window.vibeadmin.charts = charts;
  window.vibeadmin.onMessage((message) => {
    if (message.type !== "snapshot") return;
    for (const [name, chart] of Object.entries(charts)) {
      chart.push(PER_NAME[name] ? message.usage : message.point);
      if (message.revised && message.revised.length && chart.revise) chart.revise(message.revised);
    }
  });

  window.addEventListener("resize", () => {
    for (const chart of Object.values(charts)) {
      if (chart.plot) chart.plot.setSize({ width: chart.plot.root.parentElement.clientWidth, height: 190 });
    }
  });
})();
