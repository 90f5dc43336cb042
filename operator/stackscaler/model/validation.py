"""Offline validation of documents against the CRDs' structural schemas.

Does what the API server does for a stackscaler resource, without one:
type checks, enums, bounds, patterns, required fields, unknown fields (as
``kubectl apply --validate=strict``), list-map key uniqueness, defaulting,
and the ``x-kubernetes-validations`` rules through their Python twins (see
:mod:`stackscaler.model.schema`). Every problem is reported, each with its
field path and what to do about it.

Pure: no I/O.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Mapping
from typing import Any

from stackscaler import API_GROUP, API_VERSION
from stackscaler.errors import FieldError
from stackscaler.model.crds import KINDS, resource_schema
from stackscaler.model.schema import JSON, RULE_CHECKS, python_regex

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _Validator:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def err(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def value(self, schema: Mapping[str, Any], value: Any, path: str) -> Any:
        """Validate one value; return it with defaults applied (a new object)."""
        type_ = schema.get("type")
        if type_ == "object":
            out = self._object(schema, value, path)
        elif type_ == "array":
            out = self._array(schema, value, path)
        elif type_ == "integer":
            out = self._integer(schema, value, path)
        elif type_ == "number":
            out = self._number(schema, value, path)
        elif type_ == "string":
            out = self._string(schema, value, path)
        elif type_ == "boolean":
            if not isinstance(value, bool):
                self.err(path, f"must be true or false, got {_type_name(value)} {_show(value)}")
            out = value
        else:  # untyped (metadata): accepted as is
            out = value
        if isinstance(out, dict | list):
            self._rules(schema, out, path)
        return out

    def _rules(self, schema: Mapping[str, Any], node: Any, path: str) -> None:
        """Run the node's CEL twins. A check that trips over a value already reported
        as mistyped (TypeError, KeyError) is skipped rather than reported twice."""
        for spec in schema.get("x-kubernetes-validations", ()):
            r = RULE_CHECKS[spec["rule"]]
            try:
                ok = r.check(node)
            except (TypeError, KeyError, AttributeError):
                continue
            if not ok:
                self.err((path + r.field_path).lstrip("."), r.message_for(node))

    def _object(self, schema: Mapping[str, Any], value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.err(path, f"must be an object, got {_type_name(value)} {_show(value)}")
            return value
        if "properties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            # ObjectMeta: the API server validates it, not the CRD schema.
            return copy.deepcopy(value)
        props: Mapping[str, JSON] = schema.get("properties", {})
        out: dict[str, Any] = {}
        for key, sub in value.items():
            sub_path = f"{path}.{key}" if path else str(key)
            if key in props:
                if sub is None:
                    # YAML "field:" with nothing after it; the API server drops nulls too.
                    continue
                out[key] = self.value(props[key], sub, sub_path)
            elif schema.get("x-kubernetes-preserve-unknown-fields"):
                out[key] = copy.deepcopy(sub)
            else:
                hint = difflib.get_close_matches(str(key), list(props), n=1)
                fix = f"did you mean {hint[0]!r}?" if hint else "remove it"
                allowed = ", ".join(props) if props else "none"
                self.err(sub_path, f"unknown field {key!r}; {fix} (allowed: {allowed})")
        for key, sub in props.items():
            if key not in out and "default" in sub:
                sub_path = f"{path}.{key}" if path else key
                out[key] = self.value(sub, copy.deepcopy(sub["default"]), sub_path)
        for key in schema.get("required", ()):
            if key not in out and key not in value:
                sub_path = f"{path}.{key}" if path else key
                desc = props[key].get("description", "")
                self.err(sub_path, f"required field is missing; add it ({desc.rstrip('.')})")
        return out

    def _array(self, schema: Mapping[str, Any], value: Any, path: str) -> Any:
        if not isinstance(value, list):
            self.err(path, f"must be a list, got {_type_name(value)} {_show(value)}")
            return value
        lo, hi = schema.get("minItems"), schema.get("maxItems")
        if lo is not None and len(value) < lo:
            self.err(path, f"must have at least {lo} item(s), got {len(value)}")
        if hi is not None and len(value) > hi:
            self.err(path, f"must have at most {hi} items, got {len(value)}")
        out = [self.value(schema["items"], v, f"{path}[{i}]") for i, v in enumerate(value)]
        keys = schema.get("x-kubernetes-list-map-keys")
        if keys:
            seen: dict[tuple[Any, ...], int] = {}
            for i, item in enumerate(out):
                if not isinstance(item, dict):
                    continue
                key = tuple(item.get(k) for k in keys)
                if key in seen:
                    shown = ", ".join(f"{k}={_show(v)}" for k, v in zip(keys, key, strict=True))
                    self.err(
                        f"{path}[{i}]",
                        f"duplicate entry with {shown} (also at index {seen[key]}); "
                        "names must be unique",
                    )
                else:
                    seen[key] = i
        return out

    def _bounds(self, schema: Mapping[str, Any], value: float, path: str) -> None:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None:
            if schema.get("exclusiveMinimum") and not value > lo:
                self.err(path, f"must be > {lo}, got {_show(value)}")
            elif value < lo:
                self.err(path, f"must be >= {lo}, got {_show(value)}")
        if hi is not None and value > hi:
            self.err(path, f"must be <= {hi}, got {_show(value)}")

    def _integer(self, schema: Mapping[str, Any], value: Any, path: str) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.err(path, f"must be an integer, got {_type_name(value)} {_show(value)}")
            return value
        self._bounds(schema, value, path)
        return value

    def _number(self, schema: Mapping[str, Any], value: Any, path: str) -> Any:
        if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
            self.err(path, f"must be a number, got {_type_name(value)} {_show(value)}")
            return value
        self._bounds(schema, value, path)
        return value

    def _string(self, schema: Mapping[str, Any], value: Any, path: str) -> Any:
        if not isinstance(value, str):
            self.err(path, f"must be a string, got {_type_name(value)} {_show(value)}")
            return value
        enum = schema.get("enum")
        if enum is not None and value not in enum:
            close = [e for e in enum if e.lower() == value.lower()]
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.err(path, f"must be one of {', '.join(enum)}; got {_show(value)}{hint}")
            return value
        lo, hi = schema.get("minLength"), schema.get("maxLength")
        if lo is not None and len(value) < lo:
            self.err(path, "must not be empty" if lo == 1 else f"must be at least {lo} chars")
        if hi is not None and len(value) > hi:
            self.err(path, f"must be at most {hi} characters, got {len(value)}")
        pattern = schema.get("pattern")
        if pattern is not None and not python_regex(pattern).search(value):
            self.err(path, f"{_show(value)} does not match the pattern {pattern}")
        return value


def validate_value(
    schema: Mapping[str, Any], value: Any, path: str = ""
) -> tuple[Any, list[FieldError]]:
    """Validate one value against a schema node; return it defaulted, and the problems."""
    v = _Validator()
    out = v.value(schema, value, path)
    return out, v.errors


def validate_document(doc: Any) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Validate one stackscaler document; return it defaulted, and every problem found.

    The returned document is None when the kind cannot be determined.
    """
    if not isinstance(doc, dict):
        return None, [FieldError("(document)", f"must be a mapping, got {_type_name(doc)}")]
    errors: list[FieldError] = []
    expected = f"{API_GROUP}/{API_VERSION}"
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version != expected:
        errors.append(FieldError("apiVersion", f"must be {expected}, got {_show(api_version)}"))
    if kind not in KINDS:
        hint = difflib.get_close_matches(str(kind), list(KINDS), n=1)
        fix = f"; did you mean {hint[0]!r}?" if hint else ""
        errors.append(
            FieldError("kind", f"must be one of {', '.join(KINDS)}; got {_show(kind)}{fix}")
        )
        return None, errors
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        errors.append(FieldError("metadata", "required field is missing; add metadata.name"))
    else:
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            errors.append(FieldError("metadata.name", "required field is missing; add a name"))
        elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            errors.append(
                FieldError(
                    "metadata.name",
                    f"{_show(name)} is not a valid name: use lower-case letters, digits, "
                    "'-' and '.', starting and ending with a letter or digit",
                )
            )
    v = _Validator()
    out = v.value(resource_schema(kind), doc, "")
    errors.extend(v.errors)
    return (out if isinstance(out, dict) else None), errors


def apply_defaults(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document with schema defaults applied; raises nothing, ignores errors."""
    out, _ = validate_document(dict(doc))
    return out if out is not None else dict(doc)
