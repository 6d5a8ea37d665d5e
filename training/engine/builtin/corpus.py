"""The `small` model's corpus, assembled offline from the Python standard library and the demo prompts.

    python -m training.engine.builtin.corpus OUT_DIR

writes OUT_DIR/documents.jsonl (pre-training text: one docstring per row, with its qualified name) and
OUT_DIR/chats.jsonl (instruction pairs in chat form), plus OUT_DIR/corpus_stats.json. The build runs this in a
child process, so that whatever the imported modules do at import time stays out of the training process.

Everything is normalised to printable ASCII plus newline (`to_ascii`): the tokenizer's alphabet is that set, so
whatever the model generates decodes to valid UTF-8 with no control characters. The output depends only on the
Python version's standard library (recorded in the stats) and on the demo prompts file.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import pkgutil
import random
import re
import sys
import unicodedata
import warnings
from pathlib import Path

DEMO_PROMPTS = Path(__file__).resolve().parents[3] / "annotation" / "demo" / "prompts.jsonl"
SEED = 16

# Modules that open windows or browsers, print on import, are test suites, are platform-specific, or are slow.
SKIP_TOP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "ensurepip", "lib2to3",
    "pydoc_data", "distutils", "msilib", "msvcrt", "nt", "winreg", "winsound", "encodings", "__hello__",
    "__phello__", "xxsubtype", "xxlimited", "xxlimited_35", "sre_compile", "sre_constants", "sre_parse",
    "asynchat", "asyncore", "smtpd", "imp",
}
SKIP_PARTS = {"test", "tests", "idle_test", "__main__", "_test"}

# Characters that NFKD does not reduce to ASCII but that have a common ASCII spelling. The tokenizer applies the
# same table (training/engine/builtin/tokenizer.py), so prompts and corpus are normalised alike.
ASCII_TABLE = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2032": "'", "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": " - ", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u00d7": "x", "\u00f7": "/", "\u2022": "-", "\u00b7": "-", "\u2192": "->", "\u2190": "<-",
    "\u21d2": "=>", "\u2264": "<=", "\u2265": ">=", "\u2260": "!=", "\u00a3": "GBP ", "\u20ac": "EUR ",
    "\u00b0": " degrees ", "\u00a0": " ", "\t": "    ", "\r\n": "\n", "\r": "\n",
}
NOT_PRINTABLE = re.compile(r"[^\n\x20-\x7e]")


def to_ascii(text: str) -> str:
    """`text` in printable ASCII plus newline: common symbols spelled out, accents dropped, the rest removed."""
    for src, dst in ASCII_TABLE.items():
        text = text.replace(src, dst)
    text = unicodedata.normalize("NFKD", text)
    return NOT_PRINTABLE.sub("", text)


# ---------------------------------------------------------------- walking the standard library


def module_names() -> list[str]:
    """Public standard-library modules and their public submodules, sorted."""
    names: set[str] = set()
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in SKIP_TOP:
            continue
        module = _import(top)
        if module is None:
            continue
        names.add(top)
        path = getattr(module, "__path__", None)
        if not path:
            continue
        for info in pkgutil.walk_packages(path, prefix=top + ".", onerror=lambda name: None):
            parts = info.name.split(".")
            if any(p.startswith("_") or p in SKIP_PARTS for p in parts[1:]):
                continue
            if _import(info.name) is not None:
                names.add(info.name)
    return sorted(names)


def _import(name: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - platform-specific modules raise anything from ImportError to SystemExit
        return None


# Special methods worth a document of their own (the rest repeat "Return self+value." and the like).
DUNDERS = {"__init__", "__call__", "__enter__", "__exit__", "__iter__", "__next__", "__getitem__", "__len__"}


def is_public(qualname: str) -> bool:
    return not any(part.startswith("_") for part in qualname.split("."))


def _signature(obj) -> str:
    """The parameter list with plain literal defaults only: a default's repr can hold this process's state
    (`os.environ`, object addresses), which would make the corpus differ from one run or machine to the next."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return ""
    parts, star_done = [], False
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
        if p.kind in (p.VAR_POSITIONAL, p.KEYWORD_ONLY):
            star_done = True
        name = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.default is not p.empty:
            literal = isinstance(p.default, (bool, int, float, type(None))) or (
                isinstance(p.default, str) and len(p.default) <= 20)
            name += "=" + (repr(p.default) if literal else "...")
        parts.append(name)
        if p.kind is p.POSITIONAL_ONLY and (p is list(params)[-1] or list(params)[list(params).index(p) + 1].kind
                                             is not p.POSITIONAL_ONLY):
            parts.append("/")
    return "(" + ", ".join(parts) + ")"


def documented_objects(modname: str):
    """(qualified name, kind, signature, docstring) for the module and what it defines, in a stable order."""
    module = sys.modules.get(modname) or _import(modname)
    if module is None:
        return
    doc = inspect.getdoc(module)
    if doc:
        yield modname, "module", "", doc
    for name, obj in sorted(vars(module).items()):
        if name.startswith("__") or getattr(obj, "__module__", None) != modname:
            continue
        if inspect.isclass(obj):
            doc = obj.__dict__.get("__doc__")
            if isinstance(doc, str) and doc.strip():
                yield f"{modname}.{name}", "class", _signature(obj), inspect.cleandoc(doc)
            for attr, member in sorted(vars(obj).items()):
                if attr.startswith("__") and attr not in DUNDERS:
                    continue
                func = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                if isinstance(func, property):
                    func = func.fget
                if not (inspect.isfunction(func) or inspect.ismethoddescriptor(func) or inspect.isbuiltin(func)):
                    continue
                doc = getattr(func, "__doc__", None)
                if isinstance(doc, str) and doc.strip():
                    yield f"{modname}.{name}.{attr}", "method", _signature(func), inspect.cleandoc(doc)
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            doc = obj.__doc__
            if isinstance(doc, str) and doc.strip():
                yield f"{modname}.{name}", "function", _signature(obj), inspect.cleandoc(doc)


def builtin_objects():
    """Builtins have `__module__ == "builtins"`; their types (str, list, dict...) and their methods."""
    import builtins

    for name, obj in sorted(vars(builtins).items()):
        if name.startswith("_"):
            continue
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            if obj.__doc__:
                yield name, "class", "", inspect.cleandoc(obj.__doc__)
            for attr, member in sorted(vars(obj).items()):
                if not attr.startswith("_") and getattr(member, "__doc__", None):
                    yield f"{name}.{attr}", "method", _signature(member), inspect.cleandoc(member.__doc__)
        elif inspect.isbuiltin(obj) and obj.__doc__:
            yield name, "function", _signature(obj), inspect.cleandoc(obj.__doc__)


def collect_documents() -> list[dict]:
    """Every distinct docstring once (the first owner in sorted order keeps it), normalised to ASCII."""
    seen: set[str] = set()
    docs = []

    def add(qualname, kind, signature, doc):
        text = to_ascii(doc).strip()
        text = re.sub(r"\n{3,}", "\n\n", text)
        key = text.lower()
        if len(text) < 20 or key in seen:
            return
        seen.add(key)
        docs.append({"name": qualname, "kind": kind, "signature": to_ascii(signature), "doc": text})

    for item in builtin_objects():
        add(*item)
    for modname in module_names():
        try:
            for item in documented_objects(modname):
                add(*item)
        except Exception:  # noqa: BLE001 - a module whose members misbehave under introspection is skipped
            continue
    return docs


def document_text(doc: dict) -> str:
    """A document as pre-training text: a heading line naming the object, then its docstring."""
    kind = doc["kind"]
    if kind == "module":
        head = f"Module {doc['name']}"
    elif kind == "class":
        head = f"class {doc['name']}{doc['signature']}"
    else:
        head = f"{doc['name']}{doc['signature']}"
    return f"{head}\n\n{doc['doc']}"


def topic_documents() -> list[dict]:
    """The language reference topics behind `help("topic")` (pydoc_data), cut into documents of a few paragraphs."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return []
    docs = []
    for key in sorted(topics):
        text = re.sub(r"\n{3,}", "\n\n", to_ascii(topics[key]).strip())
        chunk: list[str] = []
        for par in text.split("\n\n"):
            chunk.append(par)
            if sum(map(len, chunk)) > 1500:
                docs.append({"name": f"topic/{key}/{len(docs)}", "text": "\n\n".join(chunk)})
                chunk = []
        if chunk:
            docs.append({"name": f"topic/{key}/{len(docs)}", "text": "\n\n".join(chunk)})
    return docs


def comment_documents() -> list[dict]:
    """Blocks of prose comments from the standard library's sources (one document per file)."""
    import io
    import sysconfig
    import tokenize

    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in SKIP_TOP | {"site-packages", "dist-packages"} or SKIP_PARTS & set(parts[:-1]):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        except (OSError, UnicodeDecodeError, SyntaxError, tokenize.TokenError):
            continue
        blocks: list[list[str]] = []
        last_line = -2
        for tok in tokens:
            if tok.type != tokenize.COMMENT:
                continue
            line = to_ascii(tok.string.lstrip("#").strip())
            if tok.start[0] == last_line + 1 and blocks:
                blocks[-1].append(line)
            else:
                blocks.append([line])
            last_line = tok.start[0]
        kept = [" ".join(" ".join(b).split()) for b in blocks]
        kept = [b for b in kept if _is_comment_prose(b)]
        if kept:
            docs.append({"name": "comments/" + "/".join(parts), "text": "\n\n".join(kept)})
    return docs


def _is_comment_prose(text: str) -> bool:
    words = text.split()
    if len(words) < 6 or not text[:1].isalpha():
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    return letters / len(text) > 0.85 and not any(m in text for m in ("XXX", "TODO", "noqa", "-*-", "pragma"))


# ---------------------------------------------------------------- instruction pairs


VERBS = (
    "Return Create Convert Get Set Add Remove Read Write Open Close Compute Calculate Check Test Make Build Find "
    "Parse Format Print Send Receive Start Stop Run Call Load Save Copy Move Delete Update Register Generate Encode "
    "Decode Split Join Insert Append Extend Initialize Handle Process Wait Raise Construct Emit Apply Determine "
    "Search Match Replace Flush Reset Release Acquire Yield Iterate Show Display Change Translate Validate Compare "
    "Sort Choose Wrap Unwrap Install Execute Evaluate Decorate Dispatch Look Fetch Store Clear Mark Accept Connect "
    "Bind Listen Log Pack Unpack Quote Unquote Escape Strip Truncate Expand Normalize Resolve Render Notify Signal "
    "Schedule Cancel Submit Shut Return Indicate Specify Provide Define Represent Implement Tell Put Pop Push "
    "Count Sum Map Filter Reduce Serialize Deserialize Dump Dumps Load Loads Compile Import Export Lock Unlock"
).split()
VERB_SET = set(VERBS)


def third_person(verb: str) -> str:
    """'Return' -> 'returns', 'Try' -> 'tries', 'Match' -> 'matches'."""
    v = verb.lower()
    if v.endswith("y") and v[-2:-1] not in "aeiou":
        return v[:-1] + "ies"
    if v.endswith(("s", "sh", "ch", "x", "z", "o")):
        return v + "es"
    return v + "s"


def paragraphs(doc: str) -> list[str]:
    return [re.sub(r"\s*\n\s*", " ", p).strip() for p in re.split(r"\n\s*\n", doc) if p.strip()]


def is_prose(par: str) -> bool:
    """A paragraph of sentences: starts with a capital, ends with a full stop, mostly letters, no code."""
    words = par.split()
    if not (4 <= len(words) <= 90) or not par[0].isupper() or not par.endswith("."):
        return False
    if any(marker in par for marker in (">>>", "::", "{", "}", "==", "->", "__", "[", "]", "|")):
        return False
    letters = sum(c.isalpha() or c == " " for c in par)
    return letters / len(par) > 0.85


def answer_for(doc: dict, max_words: int = 70) -> str | None:
    """The prose paragraphs of a docstring, the first one turned into a sentence about the object."""
    pars = paragraphs(doc["doc"])
    if not pars or not is_prose(pars[0]):
        return None
    first = pars[0]
    short = doc["name"]
    head, _, rest = first.partition(" ")
    if doc["kind"] in ("function", "method") and head in VERB_SET and rest:
        first = f"{short} {third_person(head)} {rest}"
    elif doc["kind"] == "function" and head in VERB_SET:
        first = f"{short} {third_person(head)}."
    words = first.split()
    out = [first]
    for par in pars[1:]:
        if not is_prose(par) or len(words) + len(par.split()) > max_words:
            break
        out.append(par)
        words += par.split()
    return "\n\n".join(out)


QUESTIONS = {
    "function": [
        "What does {name} do?", "How do I use {name}?", "What is {name} for?", "Explain {name} in Python.",
        "Can you tell me what the function {name} does?", "Describe the {name} function.",
    ],
    "method": [
        "What does {name} do?", "What is the {name} method for?", "Explain the method {name}.",
        "How does {name} work?",
    ],
    "class": [
        "What is {name}?", "Explain the {name} class.", "What is the class {name} used for?",
        "Tell me about {name} in Python.",
    ],
    "module": [
        "What is the {name} module?", "What is the {name} module for?", "Tell me about the {name} module.",
        "Explain what the Python module {name} provides.",
    ],
}

SELF_CHATS = [
    ("Hello!", "Hello. I am a small language model trained on the documentation of the Python standard library. "
               "Ask me what a module, class or function does."),
    ("Who are you?", "I am a small language model. I was trained on the docstrings of the Python standard library, "
                     "so I know a little about Python and not much else."),
    ("What can you do?", "I can explain what the modules, classes and functions of the Python standard library do. "
                         "My answers are short and I often make mistakes, so check them against the documentation."),
    ("Thank you.", "You are welcome."),
]


def docstring_chats(docs: list[dict], rng: random.Random) -> list[dict]:
    chats = []
    for doc in docs:
        answer = answer_for(doc) if is_public(doc["name"]) else None
        if answer is None:
            continue
        question = rng.choice(QUESTIONS[doc["kind"]]).format(name=doc["name"])
        chats.append({"source": "docstring", "name": doc["name"], "messages": [
            {"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return chats


TOPIC_QUESTIONS = ["Explain {title} in Python.", "What should I know about {title}?", "Tell me about {title}."]


def topic_chats(rng: random.Random) -> list[dict]:
    """One question per language reference topic (its title), answered with its first prose paragraphs."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return []
    chats = []
    for key in sorted(topics):
        lines = to_ascii(topics[key]).strip().splitlines()
        if len(lines) < 3 or not set(lines[1]) <= set("*=-"):
            continue
        title = lines[0].strip()
        pars = [p for p in paragraphs("\n".join(lines[2:])) if is_prose(p)]
        answer, words = [], 0
        for par in pars:
            if answer and words + len(par.split()) > 70:
                break
            answer.append(par)
            words += len(par.split())
        if answer and len(title.split()) <= 6:
            question = rng.choice(TOPIC_QUESTIONS).format(title=title[0].lower() + title[1:])
            chats.append({"source": "topic", "name": key, "messages": [
                {"role": "user", "content": question}, {"role": "assistant", "content": "\n\n".join(answer)}]})
    return chats


def demo_chats(path: Path = DEMO_PROMPTS) -> list[dict]:
    """Every demo prompt with each of its reference responses (normalised to ASCII)."""
    chats = []
    if not path.is_file():
        return chats
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        prompt = to_ascii(row["prompt"]).strip()
        for i, response in enumerate(row.get("responses", [])):
            text = to_ascii(response["text"]).strip()
            if text:
                chats.append({"source": "demo", "name": f"{row.get('id', '')}/{i}", "messages": [
                    {"role": "user", "content": prompt}, {"role": "assistant", "content": text}]})
    return chats


def is_held_out(name: str, fraction: float = 0.03) -> bool:
    """A stable split by name: the same rows are held out on every machine."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def build(out_dir: str | Path) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    docs = collect_documents()
    texts = [{"name": d["name"], "text": document_text(d)} for d in docs] + topic_documents() + comment_documents()
    chats = docstring_chats(docs, rng) + topic_chats(rng) + demo_chats()
    chats += [{"source": "self", "name": f"self/{i}", "messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]} for i, (q, a) in enumerate(SELF_CHATS)]
    with open(out / "documents.jsonl", "w", encoding="utf-8") as f:
        for doc in texts:
            f.write(json.dumps({**doc, "held_out": is_held_out(doc["name"])}) + "\n")
    with open(out / "chats.jsonl", "w", encoding="utf-8") as f:
        for chat in chats:
            held = chat["source"] == "docstring" and is_held_out("chat/" + chat["name"])
            f.write(json.dumps({**chat, "held_out": held}) + "\n")
    stats = {
        "python": sys.version.split()[0],
        "docstrings": len(docs),
        "documents": len(texts),
        "document_chars": sum(len(d["text"]) for d in texts),
        "document_chars_by_source": {
            "docstrings": sum(len(document_text(d)) for d in docs),
            "topics": sum(len(d["text"]) for d in texts if d["name"].startswith("topic/")),
            "comments": sum(len(d["text"]) for d in texts if d["name"].startswith("comments/")),
        },
        "chats": len(chats),
        "chats_by_source": {s: sum(c["source"] == s for c in chats) for s in ("docstring", "topic", "demo", "self")},
    }
    (out / "corpus_stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m training.engine.builtin.corpus OUT_DIR")
    print(json.dumps(build(sys.argv[1])))
