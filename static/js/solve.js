// The solve page: send the problem to the gateway's /solve/api/stream, read the
// server-sent events as they come, and render the answer (Markdown, code, math) at most
// once per animation frame. The reasoning inside <think>...</think> goes to a folded box.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("solve-config").textContent);
  const $ = (id) => document.getElementById(id);
  const form = $("solve-form"), box = $("problem"), budget = $("max-tokens");
  const submitButton = $("submit"), stopButton = $("stop");
  const formError = $("form-error"), charCount = $("char-count"), cjkNote = $("cjk-note");
  const answer = $("answer"), statusLine = $("status"), stats = $("stats"), final = $("final");
  const reasoning = $("reasoning"), reasoningBody = $("reasoning-body"), reasoningMeta = $("reasoning-meta");
  const DRAFT_KEY = "vibeadmin.solve.draft";

  // --- the problem box -------------------------------------------------------------

  // Same test as pool/prompts.py: more CJK characters than Latin letters.
  const CJK = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]/g;
  const LATIN = /[A-Za-z]/g;
  function isMainlyCjk(text) {
    const cjk = (text.match(CJK) || []).length;
    return cjk > 0 && cjk >= (text.match(LATIN) || []).length;
  }

  function codePoints(text) {  // what the server counts (Python's len)
    let n = 0;
    for (const _ of text) n++;  // eslint-disable-line no-unused-vars
    return n;
  }

  function problemError(text) {
    if (!text.trim()) return "Type a problem first: the box is empty.";
    const length = codePoints(text);
    if (length > config.maxChars) {
      return `The problem is ${length.toLocaleString()} characters long; the limit is ` +
        `${config.maxChars.toLocaleString()}. Shorten it and submit again.`;
    }
    return "";
  }

  function onBoxChange() {
    const length = codePoints(box.value);
    charCount.textContent = `${length.toLocaleString()} / ${config.maxChars.toLocaleString()} characters`;
    charCount.classList.toggle("over", length > config.maxChars);
    cjkNote.hidden = !isMainlyCjk(box.value);
    try { sessionStorage.setItem(DRAFT_KEY, box.value); } catch (e) { /* private mode */ }
  }

  function showFormError(message) {
    formError.textContent = message;
    formError.hidden = !message;
  }

  // --- reading the stream ------------------------------------------------------------

  // Calls onData(payload string) for each event's data; events may span chunks.
  async function readEvents(body, onData) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      const events = buffer.split(/\r?\n\r?\n/);
      buffer = done ? "" : events.pop();
      for (const event of events) {
        const data = event.split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
          .join("\n");
        if (data && onData(data) === false) { reader.cancel().catch(() => {}); return; }
      }
      if (done) return;
    }
  }

  let run = null;  // the request in flight, or the last one

  function onData(data) {
    if (data === "[DONE]") { run.sawDone = true; return false; }
    let chunk;
    try { chunk = JSON.parse(data); } catch (e) { return true; }
    if (chunk.error) { run.streamError = chunk.error.message || "the member failed"; return true; }
    if (chunk.usage && chunk.usage.completion_tokens) run.usageTokens = chunk.usage.completion_tokens;
    const choice = (chunk.choices || [])[0];
    if (!choice) return true;
    const piece = (choice.delta && choice.delta.content) || "";
    if (piece) {
      if (run.firstTokenAt === null) run.firstTokenAt = performance.now();
      run.text += piece;
      run.tokens += 1;
      scheduleRender();
    }
    if (choice.finish_reason) run.finishReason = choice.finish_reason;
    return true;
  }

  async function submit(event) {
    event.preventDefault();
    if (run && run.active) return;
    const problem = box.value;
    const error = problemError(problem);
    showFormError(error);
    if (error) { box.focus(); return; }
    const task = form.querySelector("input[name=task]:checked").value;
    startRun();
    try {
      const response = await fetch(config.streamUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
        body: JSON.stringify({ problem, task, max_tokens: parseInt(budget.value, 10) }),
        signal: run.controller.signal,
      });
      if (!response.ok) return finishRun("refused", await refusal(response));
      run.headersAt = performance.now();
      run.queueMs = parseFloat(response.headers.get("x-vibeadmin-queue-ms") || "0");
      await readEvents(response.body, onData);
      finishRun(run.streamError || !(run.sawDone || run.finishReason) ? "failed" : "done");
    } catch (err) {
      if (err.name === "AbortError") finishRun("stopped");
      else finishRun("failed", { text: `Lost the connection to the server (${err.message}). Your problem is still in the box: submit it again.` });
    }
  }

  // The gateway answers a refusal with OpenAI's error JSON and, for 429/503, Retry-After.
  async function refusal(response) {
    let message = "";
    try { message = (await response.json()).error.message; } catch (e) { message = response.statusText; }
    const wait = parseInt(response.headers.get("retry-after") || "", 10);
    const lead = {
      400: "The server refused this problem: ",
      413: "The server refused this problem: ",
      503: "The solver can't take it right now: ",
    }[response.status] ?? (response.status === 429 ? "" : `The server answered ${response.status}: `);
    message = lead ? message : message.charAt(0).toUpperCase() + message.slice(1);
    return { text: `${lead}${message}.`, retryAfter: Number.isFinite(wait) ? wait : null };
  }

  function startRun() {
    run = {
      active: true, controller: new AbortController(), startedAt: performance.now(), headersAt: null,
      firstTokenAt: null, queueMs: 0, text: "", tokens: 0, usageTokens: 0, finishReason: null,
      sawDone: false, streamError: null, outcome: null,
    };
    clearInterval(retryTimer);
    final.innerHTML = ""; reasoningBody.innerHTML = ""; reasoning.hidden = true; reasoning.open = false;
    stats.hidden = true;
    answer.hidden = false;
    submitButton.disabled = true; stopButton.hidden = false;
    tick(); run.ticker = setInterval(tick, 250);
    answer.scrollIntoView({ block: "nearest" });
  }

  // problem: {text, retryAfter} when the request was refused or the connection failed.
  function finishRun(outcome, problem = null) {
    if (!run.active) return;
    run.active = false; run.outcome = outcome; run.endedAt = performance.now();
    clearInterval(run.ticker);
    submitButton.disabled = false; stopButton.hidden = true;
    if (outcome === "refused" || (outcome === "failed" && !run.text)) {
      answer.hidden = true;
      showRetryable(problem ? problem.text : run.streamError, problem && problem.retryAfter);
      return;
    }
    renderNow();
    statusLine.textContent = {
      done: run.finishReason === "length" ? "Stopped at the answer-length limit" : "Done",
      stopped: "Stopped",
      failed: "Cut off: " + (run.streamError || (problem && problem.text) || "the connection ended early"),
    }[outcome];
    statusLine.className = "status " + outcome;
    showStats();
  }

  function stop() {
    if (run && run.active) run.controller.abort();
  }

  let retryTimer = null;
  function showRetryable(message, retryAfter) {
    clearInterval(retryTimer);
    if (!retryAfter) return showFormError(message);
    const until = Date.now() + retryAfter * 1000;
    const show = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      showFormError(left > 0 ? `${message} Try again in ${left} s.` : `${message} You can try again now.`);
      if (left <= 0) clearInterval(retryTimer);
    };
    show();
    retryTimer = setInterval(show, 1000);
  }

  // --- status and stats --------------------------------------------------------------

  function seconds(ms) { return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + " s"; }

  function tick() {
    const elapsed = performance.now() - run.startedAt;
    let text;
    if (run.headersAt === null) text = `Waiting for a free member… ${Math.floor(elapsed / 1000)} s`;
    else if (run.firstTokenAt === null) text = `Reading the problem… ${Math.floor(elapsed / 1000)} s`;
    else text = `${run.thinking ? "Reasoning" : "Writing"}… ${seconds(elapsed)} · ${tokensText()}`;
    statusLine.textContent = text;
    statusLine.className = "status running";
  }

  function tokenCount() { return Math.max(run.tokens, run.usageTokens); }
  function tokensText() { const n = tokenCount(); return `${n} token${n === 1 ? "" : "s"}`; }

  function showStats() {
    const total = run.endedAt - run.startedAt;
    const parts = [`Took ${seconds(total)}`, tokensText()];
    if (run.firstTokenAt !== null) {
      parts.push(`first token after ${seconds(run.firstTokenAt - run.startedAt)}`);
      const generating = (run.endedAt - run.firstTokenAt) / 1000;
      if (generating > 0.5 && tokenCount() > 1) parts.push(`${((tokenCount() - 1) / generating).toFixed(1)} tokens/s`);
    }
    if (run.queueMs >= 1000) parts.push(`waited ${seconds(run.queueMs)} for a free member`);
    stats.textContent = parts.join(" · ");
    stats.hidden = false;
  }

  // --- rendering ---------------------------------------------------------------------

  let renderQueued = false, lastRenderAt = 0, lastRenderCost = 0;

  // Re-render at most once per frame, and less often when a render gets expensive.
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    const wait = Math.max(0, lastRenderAt + 4 * lastRenderCost - performance.now());
    setTimeout(() => requestAnimationFrame(renderNow), wait);
  }

  function renderNow() {
    renderQueued = false;
    const began = performance.now();
    const parts = splitReasoning(run.text, run.active);
    run.thinking = parts.thinking;
    if (parts.reasoning) {
      reasoning.hidden = false;
      const words = parts.reasoning.trim().split(/\s+/).length;
      reasoningMeta.textContent = parts.thinking ? `(thinking… ${words} words)` : `(${words} words)`;
      if (reasoning.open || !run.active) renderMarkdown(reasoningBody, parts.reasoning, run.active);
    }
    renderMarkdown(final, parts.answer, run.active);
    lastRenderAt = performance.now();
    lastRenderCost = lastRenderAt - began;
  }

  // VibeThinker writes its reasoning inside <think>...</think>; a chat template may open
  // the tag itself, so a lone </think> also ends reasoning.
  function splitReasoning(text, streaming) {
    if (streaming) text = text.replace(/<\/?t?h?i?n?k?$/, "");  // a tag still arriving
    const open = text.indexOf("<think>"), close = text.indexOf("</think>");
    if (close >= 0) {
      const start = open >= 0 && open < close ? open + 7 : 0;
      return { reasoning: text.slice(start, close), answer: text.slice(0, Math.max(0, open)) + text.slice(close + 8), thinking: false };
    }
    if (open >= 0) return { reasoning: text.slice(open + 7), answer: text.slice(0, open), thinking: true };
    return { reasoning: "", answer: text, thinking: false };
  }

  // Math is cut out before Markdown (which would eat its backslashes and underscores) and
  // put back, rendered by KaTeX; code spans and blocks are left alone. The answer is
  // hostile: its HTML is sanitized before the formulas go back in, each as a tree of its
  // own (sanitized too), so nothing is ever parsed from a string the sanitizer never saw.
  const SEGMENTS = new RegExp([
    "(```[\\s\\S]*?(?:```|$)|~~~[\\s\\S]*?(?:~~~|$)|`[^`\\n]*`)",  // 1: code, kept as is
    "(\\$\\$[\\s\\S]+?\\$\\$|\\\\\\[[\\s\\S]+?\\\\\\])",  // 2: display math
    "(\\\\\\([\\s\\S]+?\\\\\\)|\\$(?=[^\\s$])(?:\\\\.|[^$\\\\\\n])+?(?<=[^\\s\\\\])\\$(?!\\d))",  // 3: inline
    "(\\\\boxed\\{)",  // 4: a bare \boxed{...}, outside any delimiters
  ].join("|"), "g");

  function maskMath(text) {
    text = text.replace(/[\uE000\uE001]/g, "");  // the answer cannot forge a placeholder
    const maths = [];
    let out = "", last = 0, m;
    SEGMENTS.lastIndex = 0;
    while ((m = SEGMENTS.exec(text)) !== null) {
      let segment = m[0], tex, display = false;
      if (m[1]) continue;
      if (m[2]) { tex = segment.slice(2, -2); display = true; }
      else if (m[3]) tex = segment.startsWith("$") ? segment.slice(1, -1) : segment.slice(2, -2);
      else {
        const end = closingBrace(text, m.index + segment.length);
        if (end < 0) continue;  // still streaming in
        segment = text.slice(m.index, end + 1);
        tex = segment;
        SEGMENTS.lastIndex = end + 1;
      }
      out += text.slice(last, m.index) + `\uE000${maths.length}\uE001`;
      maths.push({ tex, display });
      last = m.index + segment.length;
    }
    return { masked: out + text.slice(last), maths };
  }

  function closingBrace(text, from) {
    let depth = 1;
    for (let i = from; i < text.length; i++) {
      const c = text[i];
      if (c === "\\") i++;
      else if (c === "{") depth++;
      else if (c === "}" && --depth === 0) return i;
    }
    return -1;
  }

  // KaTeX's output, sanitized once per formula and cloned after: on every frame of a stream
  // each formula is put back, and sanitizing it again each time would cost.
  const katexCache = new Map();
  function katexFragment(tex, display) {
    const key = (display ? "D" : "I") + tex;
    let fragment = katexCache.get(key);
    if (fragment === undefined) {
      // trust off: no \href, \url, \htmlClass...; maxSize and maxExpand bound what one formula costs.
      const html = katex.renderToString(tex, {
        displayMode: display, throwOnError: false, strict: "ignore", trust: false, maxSize: 20, maxExpand: 500,
      });
      fragment = DOMPurify.sanitize(html, PURIFY_KATEX);
      katexCache.set(key, fragment);
    }
    return fragment.cloneNode(true);
  }

  // The answer's own markup keeps no `style` (a full-page overlay is one prompt injection
  // away) and its ids and names are prefixed (none can clobber the page's own). Forms and
  // style elements have no place in an answer (a fake password box, a restyled page).
  const PURIFY = {
    RETURN_DOM_FRAGMENT: true, FORBID_ATTR: ["style"], SANITIZE_NAMED_PROPS: true,
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select"],
  };
  // KaTeX's output is sanitized apart, with its styles: KaTeX writes them itself (sizes,
  // offsets), from math rendered with trust off. Its MathML (for screen readers) needs
  // these two besides DOMPurify's defaults.
  const PURIFY_KATEX = {
    ADD_TAGS: ["semantics", "annotation"], ADD_ATTR: ["encoding"], RETURN_DOM_FRAGMENT: true,
    FORBID_TAGS: PURIFY.FORBID_TAGS,
  };
  // A link in an answer opens apart from the page, which it can neither reach nor name.
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    } else if (node.hasAttribute && node.hasAttribute("target")) {
      node.removeAttribute("target");
    }
  });

  function renderMarkdown(element, text, streaming) {
    const { masked, maths } = maskMath(text);
    // A fragment, not a string: the sanitized tree goes in as is, never parsed a second time.
    const fragment = DOMPurify.sanitize(marked.parse(masked, { gfm: true }), PURIFY);
    putMathsBack(fragment, maths);
    element.replaceChildren(fragment);
    for (const code of element.querySelectorAll("pre code")) highlight(code, streaming);
  }

  // The placeholders left by maskMath are text in the sanitized tree; each becomes its
  // formula's own sanitized fragment, so nothing of the answer's markup wraps KaTeX's styles.
  function putMathsBack(root, maths) {
    const found = [];
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.data.includes("\uE000")) found.push(node);
    }
    for (const node of found) {
      const parts = node.data.split(/\uE000(\d+)\uE001/);
      node.replaceWith(...parts.map((part, i) => {
        if (i % 2 === 0) return document.createTextNode(part);
        const math = maths[Number(part)];
        return math ? katexFragment(math.tex, math.display) : document.createTextNode("");
      }));
    }
  }

  const highlightCache = new Map();
  function highlight(code, streaming) {
    const language = (code.className.match(/language-([\w+#-]+)/) || [])[1];
    const known = language && hljs.getLanguage(language);
    if (!known && streaming) return;  // guessing the language on every frame costs too much
    const source = code.textContent, key = (language || "") + "\n" + source;
    let html = highlightCache.get(key);
    if (html === undefined) {
      html = known ? hljs.highlight(source, { language, ignoreIllegals: true }).value : hljs.highlightAuto(source).value;
      if (highlightCache.size > 200) highlightCache.clear();
      highlightCache.set(key, html);
    }
    code.innerHTML = html;
    code.classList.add("hljs");
  }

  // --- wiring --------------------------------------------------------------------------

  let undoText = null;
  function fillExample(button) {
    if (run && run.active) return;
    const previous = box.value;
    box.value = button.dataset.problem;
    const radio = form.querySelector(`input[name=task][value="${button.dataset.task}"]`);
    if (radio) radio.checked = true;
    showFormError("");
    onBoxChange();
    undoText = previous.trim() && previous !== box.value ? previous : null;
    $("undo-example").hidden = undoText === null;
    box.focus();
  }

  function undoExample() {
    if (undoText === null) return;
    box.value = undoText;
    undoText = null;
    $("undo-example").hidden = true;
    onBoxChange();
    box.focus();
  }

  form.addEventListener("submit", submit);
  stopButton.addEventListener("click", stop);
  box.addEventListener("input", () => { onBoxChange(); if (formError.textContent && !problemError(box.value)) showFormError(""); });
  box.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit(); });
  reasoning.addEventListener("toggle", () => { if (reasoning.open && run) renderNow(); });
  for (const button of document.querySelectorAll("button.example")) button.addEventListener("click", () => fillExample(button));
  $("undo-example").addEventListener("click", undoExample);

  try { if (!box.value) box.value = sessionStorage.getItem(DRAFT_KEY) || ""; } catch (e) { /* private mode */ }
  onBoxChange();
})();
