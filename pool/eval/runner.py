"""Running the accuracy check: each problem sent like a client's request, its answer
checked, the run's figures kept up to date in the database as it goes.

Through the gateway (the default), the check is an API key of the `batch` class: it only
gets slots no student or platform is waiting for, so it never delays them. Pinned to one
member (`--member`), it asks that member's server directly, with the operator's prompt and
sampling defaults put in as the gateway would: that compares members or GGUFs, and takes
the member's slots outside the gateway's line, so run it on a member taken out of routing
(drained) or when the pool is quiet.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from django.conf import settings

from pool.eval.problems import Problem
from pool.final_answers import is_correct, vote
from pool.gateway.prompts import PromptSettings, prepare_messages
from pool.models import ApiKey, EvalAnswer, EvalRun, Member, PoolSettings
from pool.models.apikey import hash_key
from pool.models.quality import DONE, FAILED, STOPPED
from pool.private_files import write_private
from pool.services import jobs
from pool.services.eval_runs import record_answer
from pool.services.keys import apikey_create, apikey_delete

EVAL_KEY_NAME = "quality-eval"
ANSWER_TIMEOUT_S = 900.0  # a long answer on a busy CPU pool
BUSY_RETRIES = 40  # 429/503 from the gateway: the pool is full, the batch class waits its turn


class GatewayUnreachable(Exception):
    """The check cannot be sent at all; the message says what to do."""


@dataclass
class Target:
    """Where the problems go: the gateway's chat endpoint, or one member's."""

    url: str
    api_key: str
    body: dict  # what every request carries besides its messages
    prompts: PromptSettings | None = None  # put in here when the gateway does not


def gateway_target(base_url: str = "") -> Target:
    base = base_url or f"http://{_local(settings.HOST)}:{settings.API_PORT or settings.PORT}"
    # No sampling values of its own: the operator's defaults for the math task apply.
    body = {"model": "vibethinker", "vibeadmin": {"task": "math"}}
    return Target(base.rstrip("/") + "/v1/chat/completions", eval_key(), body)


def member_target(member: Member) -> Target:
    row = PoolSettings.load()
    temperature, top_p, max_tokens = row.sampling("math")
    body = {
        "model": "vibethinker",
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens or settings.VIBEADMIN_DEFAULT_MAX_TOKENS,
    }
    prompts = PromptSettings(
        {"general": row.prompt_general, "math": row.prompt_math, "code": row.prompt_code},
        row.language_hint,
        row.language_hint_enabled,
    )
    return Target(member.base_url.rstrip("/") + "/v1/chat/completions", member.api_key, body, prompts)


def eval_key() -> str:
    """The check's own batch-class key, made once; its raw value is kept in a file only this
    user can read (only its hash is in the database), and made afresh if it was revoked."""
    path = settings.DATA_DIR / "eval-key.txt"
    raw = path.read_text().strip() if path.exists() else ""
    if raw and ApiKey.objects.filter(key_hash=hash_key(raw), revoked_at__isnull=True).exists():
        return raw
    apikey_delete(name=EVAL_KEY_NAME)
    _, raw = apikey_create(name=EVAL_KEY_NAME, priority="batch")
    path.unlink(missing_ok=True)
    write_private(path, raw + "\n")
    time.sleep(settings.VIBEADMIN_REFRESH_S * 2)  # until the gateway has loaded the new key
    return raw


def eval_run(
    run: EvalRun,
    problems: list[Problem],
    target: Target,
    progress: Callable[[str], None] = print,
    *,
    parallel: int = 1,
) -> EvalRun:
    """Ask the problems, `parallel` at a time (one per member keeps every member's cores
    busy; more only queue). Worker threads only ask; this thread keeps the database, so a
    stop (the dashboard's button, Ctrl-C) takes effect within a second, answers in flight
    abandoned."""
    todo: queue.Queue[Problem] = queue.Queue()
    for problem in problems:
        todo.put(problem)
    answers: queue.Queue[EvalAnswer | GatewayUnreachable] = queue.Queue()
    stopping = threading.Event()

    def work() -> None:
        while not stopping.is_set():
            try:
                problem = todo.get_nowait()
            except queue.Empty:
                return
            try:
                answers.put(ask(target, problem, run, stopping.is_set))
            except GatewayUnreachable as exc:
                answers.put(exc)
                return

    for _ in range(max(1, parallel)):
        threading.Thread(target=work, daemon=True).start()
    try:
        for _ in problems:
            answer = _next_answer(answers, run)
            if answer is None:
                stopping.set()
                return jobs.finish(run, STOPPED)
            if isinstance(answer, GatewayUnreachable):
                stopping.set()
                return jobs.finish(run, FAILED, str(answer))
            _record(run, answer, progress)
    except KeyboardInterrupt:
        stopping.set()
        return jobs.finish(run, STOPPED, "stopped by Ctrl-C or a signal")
    return jobs.finish(run, DONE)


def _next_answer(answers: queue.Queue, run: EvalRun) -> EvalAnswer | GatewayUnreachable | None:
    """The next answer, or None once the run is asked to stop."""
    while not jobs.stop_requested(run):
        try:
            return answers.get(timeout=0.5)
        except queue.Empty:
            continue
    return None


def _record(run: EvalRun, answer: EvalAnswer, progress: Callable[[str], None]) -> None:
    answered = record_answer(answer)
    mark = "ok" if answer.correct else "NO"
    if run.samples > 1:
        mark += f" {answer.samples_correct}/{run.samples} right, majority {'ok' if answer.majority_correct else 'NO'}"
    progress(
        f"  {answered}/{run.planned} {mark} {answer.problem_id}: expected {answer.expected}, "
        f"got {answer.got or answer.error or '-'} ({answer.completion_tokens} tokens, {answer.seconds:.1f} s)"
    )


def ask(target: Target, problem: Problem, run: EvalRun, stopping: Callable[[], bool]) -> EvalAnswer:
    answer = EvalAnswer(
        run=run, problem_id=problem.id, kind=problem.kind, language=problem.language, expected=problem.answer
    )
    messages = [{"role": "user", "content": problem.problem}]
    if target.prompts:
        messages, _ = prepare_messages(messages, "math", target.prompts)
    started = time.monotonic()
    texts = []
    try:
        for _ in range(max(1, run.samples)):  # independent samples: pass@1 and maj@k from the same ones
            reply = _post(target, {**target.body, "messages": messages}, stopping)
            texts.append(reply["choices"][0]["message"].get("content") or "")
            answer.completion_tokens += (reply.get("usage") or {}).get("completion_tokens", 0)
    except urllib.error.HTTPError as exc:
        answer.error = f"HTTP {exc.code}: {_error_message(exc)}"[:300]
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, ConnectionRefusedError):
            raise GatewayUnreachable(
                f"nothing answers at {target.url}: start the pool first (`manage.py serve`)"
            ) from None
        answer.error = f"no answer: {exc}"[:300]
    else:
        graded = [is_correct(text, problem.answer) for text in texts]
        answer.correct, answer.got = graded[0]
        answer.samples_correct = sum(right for right, _ in graded)
        agreement = vote(texts)
        answer.votes = agreement.votes
        answer.majority_correct = agreement.answer is not None and Fraction(agreement.answer) == Fraction(
            problem.answer
        )
    answer.seconds = time.monotonic() - started
    return answer


def _post(target: Target, body: dict, stopping: Callable[[], bool]) -> dict:
    """One request; a full pool's 429/503 is waited out (Retry-After), not counted as wrong."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    for _ in range(BUSY_RETRIES):
        request = urllib.request.Request(target.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT_S) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise GatewayUnreachable(
                    f"the gateway refused the check's key: {_error_message(exc)}"
                ) from None
            if exc.code not in (429, 503):
                raise
            time.sleep(min(30.0, float(exc.headers.get("Retry-After") or 5)))
            if stopping():
                break
    raise urllib.error.URLError("the pool stayed full; try again when it is quieter")


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError, OSError):
        return exc.reason or ""


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
