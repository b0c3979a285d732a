"""Lambda SnapStart runtime hooks: do the expensive work before the snapshot, refresh after restore.

Before the snapshot (once, at publish time): imports are done, the alias is resolved, the model
downloaded, verified and its session built, and one inference warms the session's allocations.
After each restore, what must not be shared between restored environments is refreshed: an
alias resolution older than its TTL, random state, and the S3 client's connections. The first
invocation after a restore is reported as a cold start, since it is one for the caller.

The hooks are registered only when Lambda initialises a function for a snapshot
(``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``); ``snapshot_restore_py`` ships with Lambda's
Python runtimes, so the layer does not carry it.
"""

from __future__ import annotations

import os
import random
import secrets
from typing import TYPE_CHECKING

import numpy as np

from maas.core.errors import MaasError
from maas.core.observability import logger

if TYPE_CHECKING:
    from maas.core.runtime import ModelRuntime

SNAPSHOT_INIT = "snap-start"


def snapshot_init() -> bool:
    return os.getenv("AWS_LAMBDA_INITIALIZATION_TYPE") == SNAPSHOT_INIT


def before_snapshot(runtime: ModelRuntime) -> None:
    """Load the serving version now, so restored environments start with an open session."""
    if runtime.multi_model:  # it serves whatever is asked for: nothing to load in advance
        return
    try:
        served = runtime.service.current(runtime.model_name)
    except MaasError as error:  # no alias yet: the snapshot is still valid, the first request loads
        logger.warning("nothing loaded before the snapshot", extra={"error": error.to_dict()})
        return
    logger.info(
        "loaded before snapshot",
        extra={"model": served.name, "model_version": served.version, "load_ms": round(served.load_ms, 1)},
    )


def after_restore(runtime: ModelRuntime) -> None:
    """Make a restored environment its own: fresh alias view, random state and connections."""
    runtime.after_restore()
    seed = secrets.randbits(64)
    random.seed(seed)
    np.random.seed(seed % (2**32))


def register_hooks(runtime: ModelRuntime) -> bool:
    """Register both hooks with Lambda's runtime library; False where SnapStart is not in use."""
    if not snapshot_init():
        return False
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        logger.warning("SnapStart initialisation without snapshot_restore_py: hooks not registered")
        return False
    register_before_snapshot(before_snapshot, runtime)
    register_after_restore(after_restore, runtime)
    return True
