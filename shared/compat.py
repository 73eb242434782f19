"""Fields the original fleet's clients send that mean nothing here.

Such a field is declared on the request model (so a typo next to it is still refused with 422,
and the OpenAPI document lists it) with a description that starts with `IGNORED`; the handler
answers `warnings` naming each one the request set, with the description's reason, so a client
learns that its value had no effect instead of believing it did.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

IGNORED = "Accepted for compatibility, ignored: "


def ignored(why: str, **kw: Any) -> Any:
    """A pydantic Field for an optional field that is accepted and ignored, `why` saying why."""
    return Field(None, description=IGNORED + why, **kw)


def warnings_of(model: BaseModel) -> list[str]:
    """One warning per ignored field the request set (in declaration order), nested models
    included."""
    out: list[str] = []
    fields = type(model).model_fields
    for name, info in fields.items():
        if name not in model.model_fields_set:
            continue
        value = getattr(model, name)
        if info.description and info.description.startswith(IGNORED):
            out.append(f"{name}: {info.description[0].lower()}{info.description[1:]}")
        elif isinstance(value, BaseModel):
            out.extend(f"{name}.{w}" for w in warnings_of(value))
    return out


def with_warnings(warnings: list[str], **fields: Any) -> dict[str, Any]:
    """`fields`, plus `warnings` when there are any (an answer without them keeps its shape)."""
    return {**fields, "warnings": warnings} if warnings else fields
