"""`manage.py pool model add|list|remove`: the model library from the command line."""

from __future__ import annotations

import json

from pool.models import Member, Model, PoolSettings
from pool.services.library import model_add, model_named, model_remove

COLUMNS = ("NAME", "ALIAS", "ARCH", "PARAMS", "QUANT", "CONTEXT", "TEMPLATE", "SIZE", "SHA256", "MEMBERS")


def add_parser(sub) -> None:
    model = sub.add_parser("model", help="the model library: add, list or remove GGUF files")
    verbs = model.add_subparsers(dest="model_action", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="add a GGUF file (read and checked now, hashed in the background)")
    add.add_argument("path", metavar="PATH", help="the GGUF's absolute path on the members' host")
    add.add_argument("--name", default="", help="its name in the library (default: from the file's name)")
    add.add_argument("--alias", default="", help="another name clients may send as `model`")
    add.add_argument(
        "--chat-format", default="", help="a built-in chat template (e.g. gemma) where the file has none"
    )
    listing = verbs.add_parser("list", help="the library's models, what each file says, who serves it")
    listing.add_argument("--json", action="store_true", help="print a JSON list, for scripts")
    remove = verbs.add_parser("remove", help="remove a model no member serves (its file stays)")
    remove.add_argument("name", metavar="NAME")


def handle(options: dict, say) -> None:
    verb = options["model_action"]
    if verb == "add":
        model = model_add(
            path=options["path"],
            name=options["name"],
            alias=options["alias"],
            chat_format=options["chat_format"],
        )
        hashed = (
            "sha256 known" if model.sha256 else "its sha256 is computed in the background by the supervisor"
        )
        say(f"Added {model.name}: {describe(model)}; {hashed}.")
    elif verb == "list":
        show(say, as_json=options["json"])
    elif verb == "remove":
        model = model_named(options["name"])
        model_remove(model=model)
        say(f"Removed {model.name} from the library (its file {model.path} is left where it is).")


def describe(model: Model) -> str:
    params = f"{model.parameters / 1e9:.2f}B" if model.parameters else "?"
    template = "chat template inside" if model.has_chat_template else "no chat template"
    return f"{model.architecture}, {params} parameters, {model.quantization or '?'}, {template}"


def show(say, *, as_json: bool) -> None:
    primary = PoolSettings.load().primary_model_id
    rows = []
    for model in Model.objects.all():
        serving = list(Member.objects.filter(model=model).values_list("name", flat=True))
        rows.append({**model.facts(), "primary": model.pk == primary, "members": serving})
    if as_json:
        say(json.dumps(rows, indent=2))
        return
    if not rows:
        say("The library is empty: `manage.py pool model add PATH` adds a GGUF file.")
        return
    table = [COLUMNS]
    for row in rows:
        sha = row["sha256"][:12] if row["sha256"] else f"hashing {row['hash_progress']:.0%}"
        table.append(
            (
                row["name"] + (" *" if row["primary"] else ""),
                row["alias"] or "-",
                row["architecture"],
                f"{row['parameters'] / 1e9:.2f}B" if row["parameters"] else "?",
                row["quantization"] or "?",
                str(row["context_length"] or "?"),
                "yes" if row["chat_template"] else (row["chat_format"] or "no"),
                f"{row['size'] / 2**20:,.0f} MiB",
                sha,
                ", ".join(row["members"]) or "-",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    for r in table:
        say("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    say("\n* the primary model: what the alias 'vibethinker' reaches")
