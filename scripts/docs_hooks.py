"""The docs' build hooks (mkdocs.yml ``hooks:`` and mkdocstrings' ``extensions:``).

The HTTP API reference (docs/api.md) is generated at build time: the document is
``flowsight.server.openapi.build_openapi`` — the very one ``flowsight serve``
answers at ``/openapi.json`` — rendered into Markdown where docs/api.md says
``<!-- openapi -->``, and written beside the page as ``openapi.json``. Nothing
here is a hand-written copy: a route or a schema changed in the server changes
that page at the next ``mkdocs build``.

:class:`RstRoles` lets the Python API reference (docs/python-api.md) read the
docstrings' Sphinx roles (``:class:`X```) as code, as Markdown has no roles.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import griffe

MARKER = "<!-- openapi -->"
PAGE = "api.md"
JSON_FILE = "openapi.json"

#: headings for the routes' groups (the first path segment after /api/v1/);
#: a segment not named here is still listed, under its own name
GROUPS = {
    "events": "Events",
    "logs": "Logs",
    "runs": "Runs",
    "workflows": "Workflows",
    "stream": "Live stream",
    "alerts": "Alerts",
    "silences": "Silences",
    "faults": "Faults",
    "metrics": "Performance metrics",
    "overview": "Dashboard",
    "performance": "Dashboard",
    "": "Prometheus and health",
}


def _document() -> dict[str, Any]:
    import flowsight
    from flowsight.server.openapi import build_openapi

    return build_openapi(flowsight.__version__)


# --- Markdown helpers -----------------------------------------------------------------------------------------


def _code(text: str) -> str:
    """``text`` as one code span, whatever backticks it holds."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _prose(text: str) -> str:
    """A description on one line, fit for a table cell: code spans kept as they are,
    HTML and the characters Markdown would take for markup escaped outside them."""
    parts = re.split(r"(`+[^`]*?`+)", " ".join(text.split()))
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part)
        else:
            part = html.escape(part, quote=False)
            out.append(re.sub(r"([\\*_\[\]|])", r"\\\1", part))
    return "".join(out)


def _anchor(*parts: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def _schema_anchor(name: str) -> str:
    return _anchor("schema", name)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _constraints(s: dict[str, Any]) -> list[str]:
    out = []
    if "minimum" in s and "maximum" in s:
        out.append(f"{s['minimum']} to {s['maximum']}")
    elif "minimum" in s:
        out.append(f"≥ {s['minimum']}")
    elif "maximum" in s:
        out.append(f"≤ {s['maximum']}")
    if "exclusiveMinimum" in s:
        out.append(f"> {s['exclusiveMinimum']}")
    if "exclusiveMaximum" in s:
        out.append(f"< {s['exclusiveMaximum']}")
    if "multipleOf" in s:
        out.append(f"a multiple of {s['multipleOf']}")
    if "minLength" in s:
        out.append(f"at least {s['minLength']} characters")
    if "maxLength" in s:
        out.append(f"at most {s['maxLength']} characters")
    if "minItems" in s:
        out.append(f"at least {s['minItems']} items")
    if "maxItems" in s:
        out.append(f"at most {s['maxItems']} items")
    if "minProperties" in s:
        out.append(f"at least {s['minProperties']} keys")
    if "maxProperties" in s:
        out.append(f"at most {s['maxProperties']} keys")
    if "format" in s:
        out.append(f"format {s['format']}")
    if "pattern" in s:
        out.append(f"pattern {_code(s['pattern'])}")
    return out


def _type(s: dict[str, Any]) -> str:
    """A schema in a few words, with links to the named schemas it uses."""
    if "$ref" in s:
        name = _ref_name(s["$ref"])
        return f"[{name}](#{_schema_anchor(name)})"
    if "anyOf" in s:
        members = [m for m in s["anyOf"] if m.get("type") != "null"]
        text = " or ".join(_type(m) for m in members)
        return f"{text} or null" if len(members) < len(s["anyOf"]) else text
    if "enum" in s:
        return "one of " + ", ".join(_code(json.dumps(v)) for v in s["enum"])
    kind = s.get("type")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array":
        text = f"array of {_type(s.get('items', {}))}"
    elif kind == "object" and isinstance(s.get("additionalProperties"), dict):
        keys = s.get("propertyNames")
        key_text = f"keys {', '.join(_constraints(keys))}; " if keys else ""
        text = f"object ({key_text}values: {_type(s['additionalProperties'])})"
    else:
        text = kind or "any"
    extra = _constraints(s)
    return f"{text} ({'; '.join(extra)})" if extra else text


def _notes(s: dict[str, Any]) -> list[str]:
    """The descriptions inside a schema (its members', its values'), once each."""
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("description") and node["description"] not in found:
            found.append(node["description"])
        for member in node.get("anyOf", []):
            walk(member)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])

    walk(s)
    return found


def _cell(text: str) -> str:
    return text.replace("\n", " ")


# --- the page ---------------------------------------------------------------------------------------------------


def _group(path: str) -> str:
    m = re.match(r"^/api/v\d+/([^/]+)", path)
    segment = m.group(1) if m else ""
    return GROUPS.get(segment, segment.capitalize())


def _operation(path: str, method: str, op: dict[str, Any]) -> list[str]:
    lines = [
        f"### {_code(f'{method.upper()} {path}')} {{#{_anchor(method, path)}}}",
        "",
        _prose(op["summary"]) + ".",
        "",
    ]
    if op.get("description"):
        lines += [_prose(op["description"]), ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in params:
            notes = [p.get("description", ""), *_notes(p["schema"])]
            desc = "; ".join(_prose(n) for n in notes if n)
            lines.append(
                f"| {_code(p['name'])} | {p['in']} | {_cell(_type(p['schema']))} | "
                f"{'yes' if p.get('required') else 'no'} | {desc} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        for ctype, content in body["content"].items():
            lines += [f"Request body ({_code(ctype)}, required): {_type(content['schema'])}.", ""]
    lines += ["| status | meaning | content |", "|---|---|---|"]
    for status, resp in op["responses"].items():
        contents = "; ".join(f"{_code(ctype)}: {_type(c['schema'])}" for ctype, c in resp.get("content", {}).items())
        lines.append(f"| {status} | {_prose(resp['description'])} | {_cell(contents)} |")
    lines.append("")
    return lines


def _schema(name: str, s: dict[str, Any]) -> list[str]:
    lines = [f"### {name} {{#{_schema_anchor(name)}}}", ""]
    if s.get("description"):
        lines += [_prose(s["description"]), ""]
    props = s.get("properties")
    if props:
        required = set(s.get("required", []))
        lines += ["| field | type | required | default | description |", "|---|---|---|---|---|"]
        for field, fs in props.items():
            default = _code(json.dumps(fs["default"])) if "default" in fs else ""
            desc = "; ".join(_prose(n) for n in _notes(fs))
            lines.append(
                f"| {_code(field)} | {_cell(_type(fs))} | {'yes' if field in required else 'no'} | {default} | {desc} |"
            )
        lines.append("")
        if s.get("additionalProperties") is False:
            lines += ["No other fields are accepted.", ""]
    else:
        lines += [_cell(_type(s)) + ".", ""]
    return lines


def render(doc: dict[str, Any]) -> str:
    """The OpenAPI document as Markdown: a table of the routes, each route, each schema."""
    info = doc["info"]
    lines = [
        f"OpenAPI {doc['openapi']}, {_prose(info['title'])} {info['version']}: {_prose(info['description'])}",
        "",
        "| method | path | what | scope |",
        "|---|---|---|---|",
    ]
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            groups.setdefault(_group(path), []).append((path, method, op))
            scope = re.search(r"scope '([a-z]+)'", op.get("description", ""))
            lines.append(
                f"| {method.upper()} | [{_code(path)}](#{_anchor(method, path)}) | {_prose(op['summary'])} | "
                f"{scope.group(1) if scope else 'none'} |"
            )
    lines.append("")
    schemes = doc.get("components", {}).get("securitySchemes", {})
    for name, scheme in schemes.items():
        lines += [
            f"Authentication ({_code(name)}): {scheme.get('type')} {scheme.get('scheme', '')}: "
            "send `Authorization: Bearer TOKEN`.",
            "",
        ]
    for title, ops in groups.items():
        lines += [f"## {title}", ""]
        for path, method, op in ops:
            lines += _operation(path, method, op)
    lines += ["## Schemas", ""]
    for name, s in doc.get("components", {}).get("schemas", {}).items():
        lines += _schema(name, s)
    return "\n".join(lines)


# --- MkDocs events ----------------------------------------------------------------------------------------------


def on_pre_build(config: Any) -> None:
    """The README is no page of the site, so MkDocs does not check its links:
    every relative link of it must name a file of the repository (with --strict
    a warning fails the build)."""
    import logging
    from pathlib import Path

    root = Path(config.config_file_path).parent
    readme = root / "README.md"
    for target in re.findall(r"\]\(([^)\s]+)\)", readme.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if path and not re.match(r"^[a-z]+:", path) and not (root / path).exists():
            logging.getLogger("mkdocs.plugins.docs_hooks").warning(
                "README.md links to %r, which does not exist", target
            )


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, JSON_FILE, content=json.dumps(_document(), indent=2) + "\n"))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} has no {MARKER} for the generated reference")
    return markdown.replace(MARKER, render(_document()))


# --- mkdocstrings (griffe) ----------------------------------------------------------------------------------------

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")


class RstRoles(griffe.Extension):
    """``:class:`~a.b.C``` in a docstring reads as `` `C` ``, ``:func:`a.f``` as `` `a.f` ``."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(
                lambda m: _code(m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2)), obj.docstring.value
            )
