"""The TFLite export's one use of private TensorFlow: freezing variables into constants."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml.export import frozen_function
from tests.ml.conftest import ROOT

PRIVATE_MODULES = ("tensorflow.python", "keras.src")
PACKAGES = ("ml", "jobs", "workers", "config", "lubdub_client")


def _scaling_function(scale: Any) -> Any:
    """A concrete function multiplying three values by the variable ``scale`` (the caller keeps it)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
    def scaled(values: Any) -> Any:
        return values * scale

    return scaled.get_concrete_function()


def test_it_freezes_a_functions_variables_into_constants() -> None:
    import tensorflow as tf

    scale = tf.Variable(2.0)
    function = _scaling_function(scale)
    frozen = frozen_function(function)
    assert len(function.variables) == 1
    assert len(frozen.variables) == 0
    scale.assign(3.0)  # the frozen copy keeps the value it was frozen with
    (frozen_values,) = frozen(tf.constant([1.0, 2.0, 3.0]))  # a frozen function returns a list
    assert np.array_equal(frozen_values, [2.0, 4.0, 6.0])
    assert np.array_equal(function(tf.constant([1.0, 2.0, 3.0])), [3.0, 6.0, 9.0])


def test_it_names_the_private_function_a_tensorflow_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as it would where the module is gone
    monkeypatch.setitem(sys.modules, "tensorflow.python.framework.convert_to_constants", None)
    import tensorflow as tf

    scale = tf.Variable(2.0)
    with pytest.raises(ImportError, match="has no .*convert_variables_to_constants_v2, which the TFLite"):
        frozen_function(_scaling_function(scale))


def _private_imports(path: Path) -> list[tuple[str, str]]:
    """(enclosing function, module) of every import of a private TensorFlow or Keras module."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        found.extend((function, name) for name in names if name.startswith(PRIVATE_MODULES))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(path.read_text(encoding="utf-8")), "<module>")
    return found


def test_it_imports_private_tensorflow_only_in_frozen_function() -> None:
    found = {
        (str(path.relative_to(ROOT)), *entry)
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for entry in _private_imports(path)
    }
    assert found == {
        ("ml/export.py", "frozen_function", "tensorflow.python.framework.convert_to_constants"),
    }
