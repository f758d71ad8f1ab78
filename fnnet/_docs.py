"""Docstrings that Python does not attach by itself: the fields of a NamedTuple."""

from __future__ import annotations


def document_fields(cls: type, **docs: str) -> type:
    """Give each field of the NamedTuple class `cls` its docstring, so that help() and the API
    reference say what the field holds instead of 'Alias for field number 0'. Every field must be
    documented and no other name given; returns `cls`."""
    fields = tuple(getattr(cls, "_fields", ()))
    if set(docs) != set(fields):
        raise TypeError(f"document_fields: {cls.__name__} has fields {fields}, docs given for {tuple(docs)}")
    for name, doc in docs.items():
        getattr(cls, name).__doc__ = doc
    return cls
