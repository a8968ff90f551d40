// The solve page: send the conversation to the gateway's /solve/api/stream, read the
// server-sent events as they come (the place in line while waiting, then the answer), and
// render the answer (Markdown, code, math) at most once per animation frame. The reasoning
// inside <think>...</think> goes to a folded box. A conversation goes on with follow-ups
// (and, in hints mode, the hint buttons); the last ones are kept in this browser only.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("solve-config").textContent);
  const $ = (id) => document.getElementById(id);
  const form = $("solve-form"), box = $("problem"), budget = $("max-tokens");
  const submitButton = $("submit"), stopButton = $("stop");
  const formError = $("form-error"), charCount = $("char-count"), cjkNote = $("cjk-note");
  const answer = $("answer"), statusLine = $("status"), stats = $("stats"), final = $("final");
  const reasoning = $("reasoning"), reasoningBody = $("reasoning-body"), reasoningMeta = $("reasoning-meta");
  const conversationBox = $("conversation"), turnsList = $("turns"), question = $("question");
  const followupForm = $("followup-form"), followupBox = $("followup"), followupSend = $("followup-send");
  const hintSteps = $("hint-steps"), trimNote = $("trim-note");
  const agreementLine = $("agreement"), majorityBox = $("majority"), majorityBody = $("majority-body");
  const checkBox = $("check"), checkInput = $("check-answer"), checkSend = $("check-send");
  const DRAFT_KEY = "vibeadmin.solve.draft";
  const HISTORY_KEY = "vibeadmin.solve.history";
  const HISTORY_MAX = 20;
  // What a step button sends (the server turns it into the operator's instruction) and shows.
  const STEPS = { another_hint: "Another hint, please.", next_step: "Show me the next step.", solution: "Show me the full solution." };

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

  function problemError(text, what = "problem") {
    if (!text.trim()) return what === "problem" ? "Type a problem first: the box is empty." : "Type a question first: the box is empty.";
    const length = codePoints(text);
    const limit = Math.min(config.maxChars, config.maxConversationChars);
    if (length > limit) {
      return `The ${what} is ${length.toLocaleString()} characters long; the limit is ` +
        `${limit.toLocaleString()}. Shorten it and submit again.`;
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

  // --- the conversation ----------------------------------------------------------------

  // {id, task, mode, created, turns: [{role: "user", content} | {role: "user", step} |
  //  {role: "assistant", content, reasoning}]}: the turns alternate, the student's first.
  let convo = null;

  function newConversation(task) {
    const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    return { id, task, mode: config.mode, created: Date.now(), turns: [] };
  }

  function turnChars(turn) {
    return turn.step ? (config.stepChars[turn.step] || 0) : codePoints(turn.content);
  }

  // The turns to send within the operator's bounds (questions, characters): the oldest
  // exchanges after the problem are left out first, the problem itself only when the
  // last question alone leaves no room for it. Mirrors pool/gateway/tutor.py's checks.
  function bounded(turns) {
    const over = (list) => (list.length + 1) / 2 > config.maxTurns ||
      list.reduce((n, t) => n + turnChars(t), 0) > config.maxConversationChars;
    let kept = turns.slice();
    while (kept.length > 1 && over(kept)) kept = kept.length > 3 ? [kept[0], ...kept.slice(3)] : kept.slice(2);
    const messages = kept.map((t) => (t.step ? { role: "user", step: t.step } : { role: t.role, content: t.content }));
    return { messages, left: turns.length - kept.length, fits: !over(kept) };
  }

  function showTrimNote(left) {
    trimNote.hidden = !left;
    trimNote.textContent = left
      ? `The model sees only the latest turns: ${left} earlier turn${left === 1 ? " was" : "s were"} left out to fit this page's limits.`
      : "";
  }

  function questionText(turn) { return turn.step ? STEPS[turn.step] || turn.step : turn.content; }

  // A finished turn as a list item, rendered from its stored text like the live answer.
  function turnItem(turn) {
    const item = document.createElement("li");
    item.className = `turn turn-${turn.role}`;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = turn.role === "user" ? "You" : "Answer";
    const body = document.createElement("div");
    body.className = "md";
    if (turn.role === "user" && turn.step) body.textContent = questionText(turn);
    else renderMarkdown(body, turn.content, false);
    item.append(who);
    if (turn.reasoning) {
      const details = document.createElement("details");
      details.className = "reasoning";
      const summary = document.createElement("summary");
      summary.textContent = "Reasoning";
      const inner = document.createElement("div");
      inner.className = "md reasoning-body";
      details.append(summary, inner);
      details.addEventListener("toggle", () => { if (details.open && !inner.firstChild) renderMarkdown(inner, turn.reasoning, false); });
      item.append(details);
    }
    item.append(body);
    if (turn.agreement) {
      const line = document.createElement("p");
      line.className = "agreement" + (agrees(turn.agreement, turn.majority) ? "" : " disagree");
      line.textContent = agreementText(turn.agreement, turn.majority);
      item.append(line);
    }
    return item;
  }

  // --- independent solutions (voting, pool/gateway/voting.py) ---------------------------

  function agrees(a, majority) { return a.answer !== null && !majority; }

  function agreementText(a, majority) {
    const of = `${a.of} independent solution${a.of === 1 ? "" : "s"}`;
    if (a.answer === null && a.tie) return `Warning: the ${of} disagree and no answer has a majority. Check this answer yourself.`;
    if (a.answer === null) return `Warning: none of the ${of} gave a final answer that could be read. Check this answer yourself.`;
    const reach = `${a.votes} of ${of} reach ${a.answer}`;
    if (majority) return `Warning: the independent solutions disagree with the answer above: ${reach}. The majority's solution is shown below.`;
    return `${reach}.` + (a.votes * 2 <= a.of ? " That is no clear majority: check it yourself." : "");
  }

  function showAgreement(a, majority) {
    agreementLine.hidden = !a;
    majorityBox.hidden = !(a && majority);
    if (!a) return;
    agreementLine.className = "agreement" + (agrees(a, majority) ? "" : " disagree");
    agreementLine.textContent = agreementText(a, majority);
    if (majority) renderMarkdown(majorityBody, majority, false);
  }

  function validAgreement(a) {
    return a && typeof a === "object" && (a.answer === null || typeof a.answer === "string") &&
      Number.isInteger(a.votes) && Number.isInteger(a.of);
  }

  // Everything but the question in progress goes to the list of earlier turns.
  function showConversation(upTo) {
    turnsList.replaceChildren(...convo.turns.slice(0, upTo).map(turnItem));
    conversationBox.hidden = false;
  }

  function showQuestion(turn) {
    if (turn.step) question.textContent = questionText(turn);
    else renderMarkdown(question, turn.content, false);
  }

  function canAskMore() {
    const ready = convo && convo.turns.length && convo.turns[convo.turns.length - 1].role === "assistant";
    followupForm.hidden = !ready;
    hintSteps.hidden = !ready || config.mode !== "hints";
    checkBox.hidden = !ready || config.mode !== "hints" || convo.task !== "math";
  }

  // Start a new conversation with the problem in the box.
  function submitProblem(event) {
    event.preventDefault();
    if (run && run.active) return;
    const problem = box.value;
    const error = problemError(problem);
    showFormError(error);
    if (error) { box.focus(); return; }
    const task = form.querySelector("input[name=task]:checked").value;
    convo = newConversation(task);
    ask({ role: "user", content: problem });
  }

  function submitFollowup(event) {
    event.preventDefault();
    if (run && run.active) return;
    const text = followupBox.value;
    const error = problemError(text, "question");
    showFormError(error);
    if (error) { followupBox.focus(); return; }
    followupBox.value = "";
    ask({ role: "user", content: text });
  }

  function askStep(step) {
    if (run && run.active || !STEPS[step]) return;
    showFormError("");
    ask({ role: "user", step });
  }

  function ask(turn) {
    convo.turns.push(turn);
    const { messages, left, fits } = bounded(convo.turns);
    if (!fits) {
      convo.turns.pop();
      showFormError(`This question does not fit: a conversation on this page sends at most ` +
        `${config.maxConversationChars.toLocaleString()} characters. Shorten it and send it again.`);
      return;
    }
    showTrimNote(left);
    showConversation(convo.turns.length - 1);
    showQuestion(turn);
    highlightHistory();
    send(messages, convo.task);
  }

  // --- reading the stream ------------------------------------------------------------

  // Calls onData(payload string, event name) for each event; events may span chunks.
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
        const lines = event.split(/\r?\n/);
        const name = (lines.find((line) => line.startsWith("event:")) || "event: message").slice(6).trim();
        const data = lines
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
          .join("\n");
        if (data && onData(data, name) === false) { reader.cancel().catch(() => {}); return; }
      }
      if (done) return;
    }
  }

  let run = null;  // the request in flight, or the last one

  function onData(data, name) {
    if (name === "vibeadmin") return onProgress(data);
    if (data === "[DONE]") { run.sawDone = true; return false; }
    let chunk;
    try { chunk = JSON.parse(data); } catch (e) { return true; }
    if (chunk.error) { run.streamError = String(chunk.error.message || "the member failed"); return true; }
    if (chunk.vibeadmin && validAgreement(chunk.vibeadmin.agreement)) run.agreement = chunk.vibeadmin.agreement;
    if (chunk.usage && chunk.usage.completion_tokens) run.usageTokens = chunk.usage.completion_tokens;
    const choice = (chunk.choices || [])[0];
    if (!choice) return true;
    const piece = (choice.delta && choice.delta.content) || "";
    if (typeof piece === "string" && piece) {
      if (run.firstTokenAt === null) run.firstTokenAt = performance.now();
      run.text += piece;
      run.tokens += 1;
      scheduleRender();
    }
    if (choice.finish_reason) run.finishReason = choice.finish_reason;
    return true;
  }

  // The gateway's word while the problem waits: its place in line and the predicted wait,
  // then that it has started (and how long it waited).
  function onProgress(data) {
    let note;
    try { note = JSON.parse(data); } catch (e) { return true; }
    if (note && note.queue && Number.isFinite(note.queue.place)) {
      const predicted = Number.isFinite(note.queue.predicted_s) ? note.queue.predicted_s : null;
      run.line = { place: note.queue.place, predicted, at: performance.now() };
      tick();
    } else if (note && validAgreement(note.agreement)) {
      // The other solutions are in: how many reach the majority's answer, and its solution
      // where the one streamed reached another.
      run.agreement = note.agreement;
      if (note.majority && typeof note.majority.content === "string") run.majority = note.majority.content;
    } else if (note && note.started) {
      run.line = null;
      run.headersAt = performance.now();
      run.queueMs = Number(note.started.queue_ms) || 0;
      tick();
    }
    return true;
  }

  async function send(messages, task) {
    startRun();
    try {
      const response = await fetch(config.streamUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
        body: JSON.stringify({ messages, task, max_tokens: parseInt(budget.value, 10), progress: true }),
        signal: run.controller.signal,
      });
      if (!response.ok) return finishRun("refused", await refusal(response));
      run.headersAt = performance.now();
      run.queueMs = parseFloat(response.headers.get("x-vibeadmin-queue-ms") || "0");
      await readEvents(response.body, onData);
      finishRun(run.streamError || !(run.sawDone || run.finishReason) ? "failed" : "done");
    } catch (err) {
      if (err.name === "AbortError") finishRun("stopped");
      else finishRun("failed", { text: `Lost the connection to the server (${err.message}). Your question is kept: send it again.` });
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
    message = String(message);
    message = lead ? message : message.charAt(0).toUpperCase() + message.slice(1);
    return { text: `${lead}${message}.`, retryAfter: Number.isFinite(wait) ? wait : null };
  }

  function startRun() {
    run = {
      active: true, controller: new AbortController(), startedAt: performance.now(), headersAt: null,
      firstTokenAt: null, queueMs: 0, text: "", tokens: 0, usageTokens: 0, finishReason: null,
      sawDone: false, streamError: null, outcome: null, line: null, agreement: null, majority: null,
    };
    showAgreement(null, null);
    clearInterval(retryTimer);
    final.replaceChildren(); reasoningBody.replaceChildren(); reasoning.hidden = true; reasoning.open = false;
    stats.hidden = true;
    answer.hidden = false;
    // A follow-up's box stays (focus stays where it was; the next question can be typed):
    // only sending waits for the answer.
    followupForm.hidden = convo.turns.length === 1;
    final.setAttribute("aria-busy", "true");  // screen readers wait for the whole answer
    const hadFocus = document.activeElement;
    submitButton.disabled = true; followupSend.disabled = true; stopButton.hidden = false;
    setStepsDisabled(true);
    if (hadFocus === submitButton || hadFocus === followupSend || (hadFocus && hadFocus.classList.contains("step"))) stopButton.focus();
    tick(); run.ticker = setInterval(tick, 250);
    answer.scrollIntoView({ block: "nearest" });
  }

  function setStepsDisabled(disabled) {
    for (const button of hintSteps.querySelectorAll("button")) button.disabled = disabled;
  }

  // problem: {text, retryAfter} when the request was refused or the connection failed.
  function finishRun(outcome, problem = null) {
    if (!run.active) return;
    run.active = false; run.outcome = outcome; run.endedAt = performance.now();
    clearInterval(run.ticker);
    const stopHadFocus = document.activeElement === stopButton;
    submitButton.disabled = false; followupSend.disabled = false; stopButton.hidden = true;
    setStepsDisabled(false);
    final.setAttribute("aria-busy", "false");
    if (outcome === "refused" || (outcome === "failed" && !run.text)) {
      // Nothing came back: the question leaves the conversation and goes back in its box.
      const turn = convo.turns.pop();
      answer.hidden = true;
      if (!convo.turns.length) { convo = null; conversationBox.hidden = true; if (stopHadFocus) box.focus(); }
      else {
        showConversation(convo.turns.length);
        if (!turn.step) followupBox.value = turn.content;
        canAskMore();
        if (stopHadFocus) followupBox.focus();
      }
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
    showAgreement(run.agreement, run.majority);
    const parts = splitReasoning(run.text, false);
    const turn = { role: "assistant", content: parts.answer, reasoning: parts.reasoning };
    if (run.agreement) Object.assign(turn, { agreement: run.agreement, majority: run.majority || undefined });
    convo.turns.push(turn);
    saveConversation(convo);
    canAskMore();
    if (stopHadFocus || document.activeElement === document.body) followupBox.focus();
  }

  // "Check my answer" (hints mode): the server compares the typed answer with the problem's
  // own as a value and says right or not yet, never the answer; the attempt joins the
  // conversation (in this browser, and sent with later turns).
  const VERDICTS = {
    right: (typed) => `Right: ${typed} is the answer.`,
    not_yet: () => "Not yet: that is not the final answer. Try again, or ask for another hint.",
  };
  const CHECK_PROBLEMS = {
    unreadable: "Type one final answer, such as 50, 3/4 or fifty.",
    unknown: "The problem's answer could not be worked out to check yours against; ask for the full solution instead.",
  };

  async function checkAnswer() {
    const typed = checkInput.value.trim();
    if (!convo || (run && run.active)) return;
    if (!typed) { showFormError("Type your final answer first."); checkInput.focus(); return; }
    checkSend.disabled = true;
    try {
      const response = await fetch(config.checkUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ problem: convo.turns[0].content, task: convo.task, answer: typed }),
      });
      if (!response.ok) { showFormError((await refusal(response)).text); return; }
      const verdict = (await response.json()).verdict;
      if (!VERDICTS[verdict]) { showFormError(CHECK_PROBLEMS[verdict] || "The answer could not be checked."); return; }
      showFormError("");
      checkInput.value = "";
      convo.turns.push({ role: "user", content: `My answer: ${typed}` }, { role: "assistant", content: VERDICTS[verdict](typed) });
      answer.hidden = true;
      showConversation(convo.turns.length);
      saveConversation(convo);
      canAskMore();
    } catch (err) {
      showFormError(`Lost the connection to the server (${err.message}). Try again.`);
    } finally {
      checkSend.disabled = false;
    }
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

  function ordinal(n) {
    const tail = n % 100 >= 11 && n % 100 <= 13 ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
    return `${n}${tail}`;
  }

  function tick() {
    const elapsed = performance.now() - run.startedAt;
    let text;
    if (run.line) {
      const { place, predicted, at } = run.line;
      text = place === 1 ? "Next in line for a free member" : `Waiting for a free member: ${ordinal(place)} in line`;
      if (predicted !== null) {
        const left = Math.max(1, Math.round(predicted - (performance.now() - at) / 1000));
        text += `, about ${left} s to go`;
      }
      text += ` · waited ${Math.floor(elapsed / 1000)} s`;
    } else if (run.headersAt === null) text = `Waiting for a free member… ${Math.floor(elapsed / 1000)} s`;
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

  // --- history, in this browser only ------------------------------------------------------

  // What is read back is as untrusted as the answer was: checked turn by turn, and
  // rendered only through renderMarkdown (sanitized) or as plain text.
  function validTurn(turn, i) {
    if (!turn || typeof turn !== "object" || turn.role !== (i % 2 ? "assistant" : "user")) return false;
    if (turn.role === "user" && turn.step !== undefined) return Object.hasOwn(STEPS, turn.step);
    return typeof turn.content === "string" && (turn.reasoning === undefined || typeof turn.reasoning === "string") &&
      (turn.agreement === undefined || validAgreement(turn.agreement)) &&
      (turn.majority === undefined || typeof turn.majority === "string");
  }

  function validConversation(c) {
    return c && typeof c === "object" && typeof c.id === "string" && Array.isArray(c.turns) &&
      c.turns.length >= 2 && c.turns.every(validTurn) && (c.task === "math" || c.task === "code");
  }

  function loadHistory() {
    try {
      const stored = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
      return Array.isArray(stored) ? stored.filter(validConversation).slice(0, HISTORY_MAX) : [];
    } catch (e) { return []; }
  }

  // When the browser's storage is full, the oldest conversations make room; in private
  // mode nothing is kept and the page works without it.
  function storeHistory(list) {
    list = list.slice(0, HISTORY_MAX);
    for (;;) {
      try { localStorage.setItem(HISTORY_KEY, JSON.stringify(list)); break; }
      catch (e) { if (list.length <= 1) break; list = list.slice(0, -1); }
    }
    renderHistory();
  }

  function saveConversation(c) {
    storeHistory([structuredClone(c), ...loadHistory().filter((other) => other.id !== c.id)]);
  }

  function titleOf(c) {
    const first = questionText(c.turns[0]).replace(/\s+/g, " ").trim();
    const points = [...first];
    return points.length > 80 ? points.slice(0, 80).join("") + "…" : first;
  }

  function renderHistory() {
    const list = loadHistory();
    $("history-empty").hidden = list.length > 0;
    $("history-clear").hidden = list.length === 0;
    $("history-list").replaceChildren(...list.map((c) => {
      const item = document.createElement("li");
      item.dataset.id = c.id;
      const open = document.createElement("button");
      open.type = "button";
      open.className = "history-open";
      const title = document.createElement("span");
      title.className = "history-title";
      title.textContent = titleOf(c);  // plain text: never markup
      const meta = document.createElement("span");
      meta.className = "history-meta muted";
      const questions = Math.ceil(c.turns.length / 2);
      meta.textContent = `${new Date(Number(c.created) || 0).toLocaleString()} · ${questions} question${questions === 1 ? "" : "s"}`;
      open.append(title, meta);
      open.addEventListener("click", () => reopen(c.id));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "history-delete link";
      remove.textContent = "Delete";
      remove.setAttribute("aria-label", `Delete: ${titleOf(c)}`);
      remove.addEventListener("click", () => forget(c.id));
      item.append(open, remove);
      return item;
    }));
    highlightHistory();
  }

  function highlightHistory() {
    for (const item of $("history-list").children) {
      const button = item.querySelector(".history-open");
      if (convo && item.dataset.id === convo.id) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  }

  function reopen(id) {
    if (run && run.active) return;
    const found = loadHistory().find((c) => c.id === id);
    if (!found) return renderHistory();
    convo = found;
    const task = form.querySelector(`input[name=task][value="${convo.task}"]`);
    if (task) task.checked = true;
    answer.hidden = true;
    showTrimNote(0);
    showFormError("");
    showConversation(convo.turns.length);
    canAskMore();
    highlightHistory();
    $("conversation-title").focus();
  }

  function forget(id) {
    const list = loadHistory();
    const at = list.findIndex((c) => c.id === id);
    storeHistory(list.filter((c) => c.id !== id));
    const items = $("history-list").querySelectorAll(".history-open");
    (items[Math.min(at, items.length - 1)] || $("history-title")).focus();
  }

  function clearHistory() {
    if (!window.confirm("Delete every conversation kept in this browser?")) return;
    storeHistory([]);
    $("history-title").focus();
  }

  // --- copy and print ------------------------------------------------------------------

  // The conversation as Markdown: the stored text itself (plain text on the clipboard
  // runs nothing), each turn under a heading.
  function markdownOf(c) {
    return c.turns.map((turn) => `### ${turn.role === "user" ? "You" : "Answer"}\n\n${questionText(turn).trim()}\n`).join("\n");
  }

  async function copyMarkdown() {
    if (!convo) return;
    const text = markdownOf(convo);
    let copied = true;
    try { await navigator.clipboard.writeText(text); } catch (e) { copied = false; }
    const note = $("copy-markdown");
    note.textContent = copied ? "Copied" : "Copy failed: your browser refused";
    setTimeout(() => { note.textContent = "Copy as Markdown"; }, 2000);
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

  function newProblem() {
    if (run && run.active) return;
    convo = null;
    conversationBox.hidden = true;
    answer.hidden = true;
    highlightHistory();
    box.focus();
  }

  // Enter sends, Shift+Enter is a new line (and Enter while an IME composes is the IME's).
  function sendOnEnter(target) {
    target.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.keyCode === 229) return;
      e.preventDefault();
      target.form.requestSubmit();
    });
  }

  form.addEventListener("submit", submitProblem);
  followupForm.addEventListener("submit", submitFollowup);
  stopButton.addEventListener("click", stop);
  checkSend.addEventListener("click", checkAnswer);
  checkInput.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); checkAnswer(); } });
  box.addEventListener("input", () => { onBoxChange(); if (formError.textContent && !problemError(box.value)) showFormError(""); });
  sendOnEnter(box);
  sendOnEnter(followupBox);
  reasoning.addEventListener("toggle", () => { if (reasoning.open && run) renderNow(); });
  for (const button of document.querySelectorAll("button.example")) button.addEventListener("click", () => fillExample(button));
  for (const button of hintSteps.querySelectorAll("button.step")) button.addEventListener("click", () => askStep(button.dataset.step));
  $("undo-example").addEventListener("click", undoExample);
  $("new-problem").addEventListener("click", newProblem);
  $("copy-markdown").addEventListener("click", copyMarkdown);
  $("print").addEventListener("click", () => window.print());
  $("history-clear").addEventListener("click", clearHistory);
  window.addEventListener("storage", (e) => { if (e.key === HISTORY_KEY) renderHistory(); });  // another tab

  try { if (!box.value) box.value = sessionStorage.getItem(DRAFT_KEY) || ""; } catch (e) { /* private mode */ }
  onBoxChange();
  renderHistory();
})();
