"""Powertools' ``event_handler`` package without its ``__init__`` until something asks for it.

That ``__init__`` imports every resolver Powertools has (AppSync's pulls asyncio, Bedrock's,
VPC Lattice's...); a model function uses the API Gateway one. ``defer_package_init`` registers
the package with its search path, unexecuted: its submodules import as usual, and its own
``__init__`` runs the first time a name that is not a submodule is asked of the package itself
(``from aws_lambda_powertools.event_handler import APIGatewayHttpResolver``), so code that uses
the package's top-level names sees no difference. ``maas.http`` calls it before anything of the
package is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

PACKAGE = "aws_lambda_powertools.event_handler"


def defer_package_init(package: str = PACKAGE) -> None:
    """Register ``package`` unexecuted (nothing to do once it is imported, or if it is missing)."""
    if package in sys.modules:
        return
    spec = importlib.util.find_spec(package)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def attribute(name: str) -> Any:
        """A submodule is imported; any other name runs the package's ``__init__`` first."""
        if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        namespace = module.__dict__
        if namespace.pop("__getattr__", None) is not None:
            loader.exec_module(module)
        return namespace[name] if name in namespace else _missing(module, name)

    module.__dict__["__getattr__"] = attribute
    sys.modules[package] = module


def _missing(module: ModuleType, name: str) -> Any:
    raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
