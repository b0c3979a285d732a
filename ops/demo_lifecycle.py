"""The lifecycle part of ``make demo``: a second version, diff, promote, rollback, retire, delete.

One warm execution environment of the spam_nb function answers throughout; the alias moves
under it, and its answers change version after ``ALIAS_TTL_SECONDS`` without a redeploy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import IO, Any

from maas.core.errors import MaasError
from ops.lifecycle import Lifecycle
from ops.local import invoke, read_event
from ops.registry_admin import RegistryAdmin
from ops.template import function_for_model
from training.data import PROJECT_ROOT
from training.options import TrainOptions

TTL_SECONDS = 2
Say = Callable[[str], None]


class SteppedClock:
    """The warm environment's clock: it stands still until the demo lets the TTL pass, so "within
    the TTL" is within it however long a promote takes on a busy machine."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def pass_ttl(self) -> None:
        self.now = max(self.now, time.monotonic()) + TTL_SECONDS


class WarmFunction:
    """The spam_nb handler in one execution environment that stays warm between calls."""

    def __init__(self, bucket: str, log: IO[str], **extra: str) -> None:
        from ops.local import load_function_module

        self.module = load_function_module(function_for_model("spam_nb"))
        self.module.runtime.reset()  # a new execution environment
        self.env = {"MODEL_BUCKET": bucket, "ALIAS_TTL_SECONDS": str(TTL_SECONDS), **extra}
        self.log = log
        self.event = read_event(PROJECT_ROOT / "events" / "spam_nb" / "predict.json")
        self.clock = SteppedClock()

    def predict(self) -> tuple[int, dict[str, Any]]:
        started = time.monotonic()
        with redirect_stdout(self.log):
            response = invoke("spam_nb", self.event, self.env)
        service = self.module.runtime.service
        if service.clock is not self.clock:  # the first call made the service: from now on, ours
            self.clock.now = started
            service.clock = self.clock
        return int(response["statusCode"]), json.loads(response["body"])

    def answer(self) -> str:
        status, body = self.predict()
        if status != 200:
            return f"{status} {body['error']['code']}: {body['error']['message']}"
        labels = ", ".join(f"{p['label']} {p['probabilities'][p['label']]:.3f}" for p in body["predictions"])
        return f"200, answered by spam_nb version {body['model_version']} ({labels})"

    @property
    def loaded(self) -> list[int]:
        return list(self.module.runtime.service.loaded_versions())


def run_lifecycle(bucket: str, workdir: Path, alias: str, log: IO[str], say: Say, step: int) -> int:
    """Run the lifecycle steps, numbered from ``step``; returns the next step number."""
    from training.models import spam_nb

    registry = RegistryAdmin(bucket)
    lifecycle = Lifecycle(registry)

    say(f"{step}. train a second spam_nb (another split, seed 29) and publish it without moving {alias}")
    spam_nb.train(TrainOptions(out=workdir / "spam_nb_v2", seed=29, quiet=True))
    second = lifecycle.publish(workdir / "spam_nb_v2")
    say(f"   published spam_nb version {second.version} (signature checked against {alias})")
    first = second.version - 1
    diff = lifecycle.diff("spam_nb", first, second.version)
    say(f"   maas models diff spam_nb {first} {second.version}:")
    for metric in ("accuracy", "f1", "precision", "recall"):
        if metric in diff["metrics"]:
            row = diff["metrics"][metric]
            say(
                f"     {metric:<10} v{first} {row[str(first)]:.4f}  v{second.version} {row[str(second.version)]:.4f}  Δ {row['delta']:+.4f}"
            )
    say(
        f"     signature: {'compatible' if diff['compatible'] else 'INCOMPATIBLE'} ({len(diff['signature_changes'])} changes)"
    )
    step += 1

    say(
        f"{step}. one warm spam_nb environment (ALIAS_TTL_SECONDS={TTL_SECONDS}) answers while the alias moves"
    )
    warm = WarmFunction(bucket, log)
    say(f"   before:                  {warm.answer()}")
    moved = lifecycle.promote("spam_nb", second.version, alias)
    say(
        f"   maas models promote spam_nb {second.version} --alias {alias}: {alias} -> v{moved.version} (was v{moved.previous}, revision {moved.revision})"
    )
    say(f"   within the TTL:          {warm.answer()}")
    warm.clock.pass_ttl()
    say(f"   after the TTL:           {warm.answer()}  [no redeploy; loaded {warm.loaded}]")
    back = lifecycle.rollback("spam_nb", alias)
    say(
        f"   maas models rollback spam_nb --alias {alias}: {alias} -> v{back.version} (was v{back.previous}, revision {back.revision})"
    )
    warm.clock.pass_ttl()
    say(f"   after the TTL:           {warm.answer()}")
    step += 1

    say(f"{step}. retire and delete the unused version")
    try:
        lifecycle.retire("spam_nb", first)
    except MaasError as error:
        say(f"   maas models retire spam_nb {first}: refused: {error.message}")
    lifecycle.retire("spam_nb", second.version)
    say(
        f"   maas models retire spam_nb {second.version}: status {registry.status('spam_nb', second.version)}"
    )
    pinned = WarmFunction(bucket, log, MODEL_VERSION=str(second.version))
    say(f"   a function pinned with MODEL_VERSION={second.version}: {pinned.answer()}")
    removed = lifecycle.delete("spam_nb", second.version)
    say(
        f"   maas models delete spam_nb {second.version}: {removed} object versions removed; versions now {registry.list_versions('spam_nb')}"
    )
    for item in lifecycle.aliases("spam_nb"):
        moves = ", ".join(f"r{h['revision']} {h['action']} v{h['version']}" for h in item.history)
        say(f"   alias {item.alias} -> v{item.version}, history: {moves}")
    return step + 1
