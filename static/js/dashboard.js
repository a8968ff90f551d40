// The dashboard's live side: one websocket to /ws/dashboard/.
// Snapshots (once a second) update the figures in place; pool events ask the parts of the
// page that listen for them (hx-trigger="vibe:... from:body") to fetch themselves again.
"use strict";

(function () {
  const live = document.getElementById("live");
  const listeners = [];
  let retryMs = 1000;

  // Which page parts refresh on which kind of pool event.
  const REFRESH = {
    state: ["vibe:members", "vibe:events"],
    action: ["vibe:members", "vibe:events"],
    scaling: ["vibe:members", "vibe:scaling", "vibe:events"],
    alert: ["vibe:alerts", "vibe:events"],
  };

  function setLive(text, on) {
    if (!live) return;
    live.textContent = text;
    live.classList.toggle("on", on);
  }

  function trigger(name) {
    if (window.htmx) htmx.trigger(document.body, name);
  }

  function updateTotals(totals) {
    for (const el of document.querySelectorAll("[data-total]")) {
      const value = totals[el.dataset.total];
      if (value !== undefined) el.textContent = value;
    }
  }

  function updateMembers(snapshot) {
    const table = document.querySelector("table.members");
    if (!table) return;
    if (table.dataset.signature !== snapshot.signature) {
      // A member came, went or changed state: the server renders the table again.
      table.dataset.signature = snapshot.signature;
      trigger("vibe:members");
      return;
    }
    for (const row of snapshot.members) {
      const tr = table.querySelector(`tr[data-member="${CSS.escape(row.name)}"]`);
      if (!tr) continue;
      for (const cell of tr.querySelectorAll("[data-field]")) {
        const value = row[cell.dataset.field];
        if (value !== undefined && cell.textContent !== value) cell.textContent = value;
      }
    }
  }

  function onMessage(message) {
    if (message.type === "snapshot") {
      setLive(`live · ${message.at}`, true);
      updateTotals(message.totals);
      updateMembers(message);
    } else if (message.type === "event") {
      for (const name of REFRESH[message.event.kind] || ["vibe:events"]) trigger(name);
    }
    for (const listener of listeners) listener(message);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/dashboard/`);
    socket.onopen = () => { retryMs = 1000; setLive("live", true); };
    socket.onmessage = (e) => onMessage(JSON.parse(e.data));
    socket.onclose = (e) => {
      if (e.code === 4401) return setLive("logged out", false);  // this log-in ended: no reconnecting
      setLive("offline · reconnecting", false);
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    };
  }

  window.vibeadmin = { onMessage: (fn) => listeners.push(fn) };
  connect();
})();
