"""Read ``template.yaml`` the way the local tools need it: functions, handlers, environment, routes.

CloudFormation's short tags (``!Ref``, ``!Sub`` …) are kept as ``Intrinsic`` values so that the
local tools can tell a literal setting from one AWS resolves at deploy time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maas.core.errors import ConfigurationError
from training.data import PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "template.yaml"


@dataclass(frozen=True, slots=True)
class Intrinsic:
    tag: str
    value: Any


# libyaml's parser when PyYAML has it: the generated template (3,000 lines) parses in 0.1 s, not 0.8
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Intrinsic:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return Intrinsic(suffix, value)


_Loader.add_multi_constructor("!", _intrinsic)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    function: str


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    module: str
    handler: str
    environment: dict[str, Any] = field(default_factory=dict)
    memory_mb: int = 128
    timeout_s: int = 3
    routes: tuple[Route, ...] = ()

    @property
    def model_name(self) -> str | None:
        value = self.environment.get("MODEL_NAME")
        return value if isinstance(value, str) else None

    def literal_environment(self) -> dict[str, str]:
        """The variables whose values are plain strings (intrinsics are resolved only by AWS)."""
        return {k: str(v) for k, v in self.environment.items() if not isinstance(v, Intrinsic)}


_parsed: dict[tuple[Path, int, int], dict[str, Any]] = {}


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as a document of its own (a copy: callers may change it), parsed once per
    version of the file (its modification time and size)."""
    stat = path.stat()
    key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
    if key not in _parsed:
        with path.open() as handle:
            _parsed[key] = yaml.load(handle, Loader=_Loader)
    return copy.deepcopy(_parsed[key])


def functions(path: Path = TEMPLATE, document: dict[str, Any] | None = None) -> list[FunctionSpec]:
    """The template's functions; ``document``: the template already loaded from ``path``."""
    document = load_template(path) if document is None else document
    defaults = document.get("Globals", {}).get("Function", {})
    specs: list[FunctionSpec] = []
    for logical_id, resource in document.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        module, _, handler = str(props["Handler"]).rpartition(".")
        environment = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        # each route is declared once per HTTP API variant (IAM and JWT): keep one of each
        routes = tuple(
            dict.fromkeys(
                Route(
                    str(event["Properties"]["Method"]).upper(), str(event["Properties"]["Path"]), logical_id
                )
                for event in props.get("Events", {}).values()
                if event.get("Type") == "HttpApi"
            )
        )
        memory = props.get("MemorySize", defaults.get("MemorySize", 128))
        timeout = props.get("Timeout", defaults.get("Timeout", 3))
        specs.append(
            FunctionSpec(
                logical_id=logical_id,
                code_dir=(path.parent / str(props["CodeUri"])).resolve(),
                module=module,
                handler=handler,
                environment=environment,
                memory_mb=memory if isinstance(memory, int) else 1024,
                timeout_s=timeout if isinstance(timeout, int) else 30,
                routes=routes,
            )
        )
    return specs


def function_for_model(model: str, path: Path = TEMPLATE) -> FunctionSpec:
    """The function serving ``model``; a function without a model (``registry``) by its service name."""
    for spec in functions(path):
        if spec.model_name == model:
            return spec
    for spec in functions(path):
        if spec.model_name is None and spec.environment.get("POWERTOOLS_SERVICE_NAME") == model:
            return spec
    known = sorted(s.model_name for s in functions(path) if s.model_name)
    raise ConfigurationError(
        f"template.yaml has no function for model {model!r}; it has {known} "
        "(a model without one is served by multi_model: invoke that with an event naming the model)",
        field="model",
    )
