"""The authors' prompts, read from the protocol text (../shared/reference/official-protocol.md, 6.1-6.2).

Reference prompts of the tests come from here, never from flowcheck's own constants: the system
prompt and the qa template are the protocol's string literals, and a conversation is the protocol's
own ``SYSTEM + " " + "USER: " + ...`` expression, evaluated (string literals, names and ``+`` only).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "official-protocol.md"


def protocol_text() -> str:
    return PROTOCOL.read_text()


def _section(title_start: str) -> str:
    text = protocol_text()
    start = text.index(f"### {title_start}")
    end = text.index("\n### ", start + 4)
    return text[start:end]


def _literal(source: str) -> str:
    """A Python string literal as written in the protocol (``"...\\n"``) -> its value."""
    return ast.literal_eval(source)


def system_mvbench() -> str:
    """SYSTEM_MVBENCH as the protocol quotes it (6.2: ``system = SYSTEM_MVBENCH = `"..."` ``)."""
    section = _section("6.2")
    match = re.search(r"system = SYSTEM_MVBENCH =\s*`(\"[^`]*\")`", section)
    assert match, "official-protocol.md 6.2 no longer quotes SYSTEM_MVBENCH"
    return _literal(match.group(1))


def _evaluate(expression: str, names: dict[str, str]) -> str:
    """Evaluate ``"lit" + NAME + ...`` (string literals, names, +) without running code."""

    def walk(node: ast.AST) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return names[node.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return walk(node.left) + walk(node.right)
        raise ValueError(f"unexpected syntax in the protocol's prompt expression: {ast.dump(node)}")

    return walk(ast.parse(expression, mode="eval").body)


def authors_question(question: str, options: list[str] | tuple[str, ...]) -> str:
    """The qa template (6.1): the protocol's head literal, one option literal per candidate, then rstrip."""
    section = _section("6.1")
    head = re.search(r'question = ("Question: \{q\}[^"]*")', section)
    option = re.search(r'f("\(\{L\}\) \{c\}[^"]*")', section)
    assert head and option, "official-protocol.md 6.1 no longer quotes the qa template"
    text = _literal(head.group(1)).replace("{q}", question)
    for letter, candidate in zip("ABCDEFGHIJ", options, strict=False):
        text += _literal(option.group(1)).replace("{L}", letter).replace("{c}", candidate)
    return text.rstrip()


def authors_query(question: str, options: list[str] | tuple[str, ...]) -> str:
    """``user_query``'s join (6.2): ``query = question + " " + "\\nOnly give the best option."``."""
    match = re.search(r"`query = (question \+ [^`]*)`", _section("6.2"))
    assert match, "official-protocol.md 6.2 no longer spells user_query's join"
    return _evaluate(match.group(1), {"question": authors_question(question, options)})


def conversation(style: str, question: str, options: list[str] | tuple[str, ...]) -> str:
    """The exact prompt string of ``eval_mvbench`` (``"llava"``) or ``eval_mvbench_phi3`` (``"phi3"``), 6.2."""
    expressions = re.findall(r"`(SYSTEM \+ [^`]*)`", _section("6.2"))
    assert len(expressions) == 2, "official-protocol.md 6.2 should spell the LLaVA and the phi3 prompt"
    expression = dict(zip(("llava", "phi3"), expressions, strict=True))[style]
    names = {
        "SYSTEM": system_mvbench(),
        "question": authors_question(question, options),
        "query": authors_query(question, options),
    }
    return _evaluate(expression, names)


def videollama3_prompt(question: str, options: list[str] | tuple[str, ...], times: list[float], per_frame: int) -> str:
    """The VideoLLaMA3 prompt (6.2): the protocol's pattern with its frames, options and instruction filled in."""
    match = re.search(r"`(<\|im_start\|>user\\nTime \{t0[^`]*)`", _section("6.2"))
    assert match, "official-protocol.md 6.2 no longer spells the VideoLLaMA3 prompt"
    pattern = match.group(1).replace("\\n", "\n")
    head = pattern[: pattern.index("Time {t0")]
    instruction_start = pattern.index("(D) {c3}\n") + len("(D) {c3}\n")
    instruction_end = pattern.index("<|im_end|>")
    instruction, tail = pattern[instruction_start:instruction_end], pattern[instruction_end:]
    video = ",".join(f"Time {t:.1f}s:" + "<image>" * per_frame for t in times)
    body = "".join(f"({letter}) {c}\n" for letter, c in zip("ABCDEFGHIJ", options, strict=False))
    return f"{head}{video}\nQuestion: {question}\nOptions:\n{body}{instruction}{tail}"
