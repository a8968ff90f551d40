// The overview's profile plot (uPlot): tokens/s and time to first token against answers at
// once, one series per layout. Drawn again whenever htmx swaps the profile panel in.
"use strict";

(function () {
  const COLORS = ["#3451d1", "#d1345b", "#1f9d6b", "#d18f34", "#7a34d1", "#34a7d1", "#8a8f3c", "#d134b8"];

  let drawn = null; // the figures last drawn, and where: redraw only when either changed

  function draw() {
    const source = document.getElementById("profile-data");
    if (!source || typeof uPlot === "undefined") return;
    const target = document.querySelector("[data-profile-chart]");
    if (drawn && drawn.text === source.textContent && drawn.target === target && target.firstChild) return;
    drawn = { text: source.textContent, target };
    const data = JSON.parse(source.textContent);
    if (!data || !data.series.length) return;
    for (const el of document.querySelectorAll("[data-profile-chart]")) {
      const key = el.dataset.profileChart;
      const opts = {
        width: el.clientWidth || 480,
        height: 220,
        scales: { x: { time: false, distr: 3, log: 2 } },
        axes: [
          { stroke: "#5b6577", label: "answers at once", values: (u, ticks) => ticks.map(String) },
          { stroke: "#5b6577", size: 56 },
        ],
        series: [{ label: "at once" }, ...data.series.map((s, i) => ({
          label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: true, size: 5 },
        }))],
        cursor: { drag: { x: false, y: false } },
      };
      el.replaceChildren();
      new uPlot(opts, [data.levels, ...data.series.map((s) => s[key])], el);
    }
  }

  document.addEventListener("DOMContentLoaded", draw);
  // The panel is swapped whole (outerHTML) while a profile runs: draw into the new one.
  document.addEventListener("htmx:afterSettle", draw);
  if (document.readyState !== "loading") draw();
})();
