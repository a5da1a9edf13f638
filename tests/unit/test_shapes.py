"""The thin client's TypedDicts describe exactly the JSON the server's models produce.

The client cannot import the pydantic models (it must start fast), so the same shape is
written twice; this test keeps the two equal, key for key.
"""

from __future__ import annotations

from typing import Any, get_type_hints

import pytest
from pydantic import BaseModel

from core.api import shapes
from core.audit import VerifyReport
from core.llm.catalog import ModelInfo
from core.models import (
    DEFAULT_STRATEGY,
    AuditEntry,
    Budget,
    BudgetPeriodRecord,
    ExecRecord,
    ExecResult,
    LogLine,
    RuntimeInfo,
    Task,
    TaskPriority,
    TaskStatus,
    Usage,
)
from core.views import AgentRow, Tokens

PAIRS: list[tuple[type[Any], type[BaseModel]]] = [
    (shapes.AgentObject, AgentRow),
    (shapes.Tokens, Tokens),
    (shapes.ExecObject, ExecRecord),
    (shapes.Usage, Usage),
    (shapes.LogLine, LogLine),
    (shapes.RuntimeObject, RuntimeInfo),
    (shapes.ModelObject, ModelInfo),
    (shapes.AuditEntryObject, AuditEntry),
    (shapes.VerifyReport, VerifyReport),
    (shapes.TaskObject, Task),
    (shapes.ExecResultObject, ExecResult),
    (shapes.BudgetObject, Budget),
    (shapes.BudgetPeriodObject, BudgetPeriodRecord),
]


def json_keys(model: type[BaseModel]) -> set[str]:
    schema = model.model_json_schema(mode="serialization")
    return set(schema["properties"])


@pytest.mark.parametrize("typed, model", PAIRS, ids=lambda p: getattr(p, "__name__", "?"))
def test_the_client_shape_has_the_models_keys(typed: type[Any], model: type[BaseModel]) -> None:
    assert set(get_type_hints(typed)) == json_keys(model)


def test_the_clients_constants_are_the_models() -> None:
    assert tuple(p.value for p in TaskPriority) == shapes.TASK_PRIORITIES
    assert tuple(s.value for s in TaskStatus) == shapes.TASK_STATUSES
    assert shapes.DEFAULT_STRATEGY == DEFAULT_STRATEGY
