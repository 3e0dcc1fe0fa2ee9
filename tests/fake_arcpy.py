"""A stand-in for the parts of arcpy a Python toolbox uses, for tests without ArcGIS.

:func:`make_module` builds a fresh ``arcpy`` module object: ``Parameter`` (constructor
arguments kept, value/valueAsText, filter, messages), the progressor functions (every call
recorded in ``module.calls``), ``ExecuteError``, ``AddMessage``, ``env`` and
``management.CopyFeatures``. :class:`Messages` records what a tool's ``execute`` reports.
"""

from __future__ import annotations

import types
from typing import Any


class Filter:
    """arcpy's parameter filter: a type and a list."""

    def __init__(self):
        self.type: str | None = None
        self.list: list = []


class Parameter:
    """arcpy.Parameter: keeps its constructor arguments; value text as ArcGIS renders it."""

    def __init__(self, displayName=None, name=None, datatype=None, parameterType=None,
                 direction=None, **kwargs):
        self.displayName = displayName
        self.name = name
        self.datatype = datatype
        self.parameterType = parameterType
        self.direction = direction
        self.kwargs = kwargs
        self.filter = Filter()
        self.category: str | None = None
        self.value: Any = None
        self.altered = False
        self.hasBeenValidated = False
        self.message: str | None = None
        self.messageLevel: str | None = None

    @property
    def valueAsText(self) -> str | None:
        if self.value is None:
            return None
        if self.kwargs.get("multiValue") and isinstance(self.value, (list, tuple)):
            # ArcGIS joins the items with ";" and quotes those holding spaces.
            return ";".join(f"'{v}'" if " " in str(v) else str(v) for v in self.value)
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return str(self.value)

    def setErrorMessage(self, text: str) -> None:
        self.message, self.messageLevel = text, "error"

    def setWarningMessage(self, text: str) -> None:
        self.message, self.messageLevel = text, "warning"

    def clearMessage(self) -> None:
        self.message, self.messageLevel = None, None

    def hasError(self) -> bool:
        return self.messageLevel == "error"

    def hasWarning(self) -> bool:
        return self.messageLevel == "warning"


class Messages:
    """The ``messages`` object ArcGIS passes to ``execute``."""

    def __init__(self):
        self.records: list[tuple[str, str]] = []

    def addMessage(self, text: str) -> None:
        self.records.append(("message", text))

    def addWarningMessage(self, text: str) -> None:
        self.records.append(("warning", text))

    def addErrorMessage(self, text: str) -> None:
        self.records.append(("error", text))

    def of(self, level: str) -> list[str]:
        return [text for kind, text in self.records if kind == level]


def make_module(scratch: str = ".") -> types.ModuleType:
    """A fresh fake ``arcpy``; put it in ``sys.modules['arcpy']`` before loading a .pyt."""
    arcpy = types.ModuleType("arcpy")
    arcpy.calls = []

    class ExecuteError(Exception):
        """arcpy.ExecuteError."""

    def recorder(name: str):
        def call(*args):
            arcpy.calls.append((name, *args))
        call.__name__ = name
        return call

    arcpy.Parameter = Parameter
    arcpy.ExecuteError = ExecuteError
    for name in ("SetProgressor", "SetProgressorLabel", "SetProgressorPosition",
                 "ResetProgressor", "AddMessage", "AddWarning", "AddError"):
        setattr(arcpy, name, recorder(name))
    arcpy.env = types.SimpleNamespace(overwriteOutput=False, scratchFolder=scratch)

    def copy_features(source: str, out: str) -> None:
        arcpy.calls.append(("CopyFeatures", source, out))

    arcpy.management = types.SimpleNamespace(CopyFeatures=copy_features)
    return arcpy
