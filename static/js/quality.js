// The Quality page's chart (uPlot, as the overview's): pass@1 per model file over time,
// one series per GGUF, a dot per finished run.
"use strict";

(function () {
  const COLORS = ["#3451d1", "#d1345b", "#1f9d6b", "#d18f34", "#7a34d1", "#34a7d1", "#8a8f3c", "#d134b8"];
  const data = JSON.parse(document.getElementById("quality-data").textContent);
  const el = document.getElementById("quality-chart");
  if (!data.columns[0].length) {
    el.textContent = el.dataset.empty;
    return;
  }
  const opts = {
    width: el.clientWidth || 640,
    height: 220,
    scales: { x: { time: true }, y: { range: [0, 100] } },
    axes: [{ stroke: "#5b6577" }, { stroke: "#5b6577", size: 48 }],
    series: [{}, ...data.labels.map((label, i) => ({
      label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true, points: { show: true, size: 6 },
    }))],
    cursor: { drag: { x: false, y: false } },
  };
  const plot = new uPlot(opts, data.columns, el);
  window.addEventListener("resize", () => plot.setSize({ width: el.clientWidth, height: 220 }));
})();
