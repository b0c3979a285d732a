"""Lifecycle against a moto server over HTTP: racing alias moves, and the `maas models` commands.

About the race: S3 evaluates ``If-Match`` atomically with the write. moto 5.2.5 checks the
condition and then stores the object in two steps, so two requests arriving at the same instant
could both pass its check. The racing clients below therefore send their ``PutObject`` calls one
at a time (a lock around the client call) to stand in for S3's atomic conditional write; the
reads, the ETags and the decision (which write is refused) are moto's, over HTTP.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from maas.core.errors import Conflict
from maas.core.registry import Alias
from ops.lifecycle import Lifecycle
from ops.local import create_bucket
from ops.registry_admin import RegistryAdmin
from training.data import PROJECT_ROOT

MAAS = str(Path(sys.executable).parent / "maas")
BUCKET = "maas-e2e-lifecycle"
RACE_BUCKET = "maas-e2e-race"


def maas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAAS, *args, "--bucket", BUCKET],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        timeout=300,
    )


class AtomicPuts:
    """An S3 client whose PutObject calls reach the server one at a time (see the module docstring)."""

    def __init__(self, client: Any, lock: threading.Lock) -> None:
        self._client = client
        self._lock = lock

    def put_object(self, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class RacingRegistry(RegistryAdmin):
    """Reads the alias, then waits until the other mover has read it too: both decide on one ETag."""

    def __init__(self, s3: Any, barrier: threading.Barrier) -> None:
        super().__init__(RACE_BUCKET, s3)
        self.barrier: threading.Barrier | None = barrier

    def get_alias(self, name: str, alias: str) -> Alias | None:
        found = super().get_alias(name, alias)
        if self.barrier is not None:
            self.barrier.wait(timeout=30)
        return found


@pytest.fixture(scope="module")
def race_registry(moto_endpoint: str, spam_nb_dir: Path) -> RegistryAdmin:
    create_bucket(RACE_BUCKET)
    registry = RegistryAdmin(RACE_BUCKET, boto3.client("s3"))
    for _ in range(3):
        registry.publish(spam_nb_dir)
    return registry


def test_concurrent_promotions_one_wins_per_round_and_history_stays_consistent(
    race_registry: RegistryAdmin,
) -> None:
    lock = threading.Lock()
    Lifecycle(race_registry).promote("spam_nb", 1, "production")
    rounds = 6
    for round_number in range(rounds):
        barrier = threading.Barrier(2)
        movers = [RacingRegistry(AtomicPuts(boto3.client("s3"), lock), barrier) for _ in range(2)]
        targets = [2 + round_number % 2, 1 + round_number % 3]
        outcomes: list[Any] = [None, None]

        def move(
            index: int,
            movers: list[RacingRegistry] = movers,
            targets: list[int] = targets,
            outcomes: list[Any] = outcomes,
        ) -> None:
            try:
                outcomes[index] = Lifecycle(movers[index]).promote("spam_nb", targets[index], "production")
            except Conflict as error:
                outcomes[index] = error

        threads = [threading.Thread(target=move, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        winners = [o for o in outcomes if isinstance(o, Alias)]
        losers = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert losers[0].code == "alias_conflict"
        assert "moved by someone else meanwhile; read it again and retry" in losers[0].message
        loser = outcomes.index(losers[0])
        movers[loser].barrier = None  # the loser retries on a fresh read, and succeeds
        retried = Lifecycle(movers[loser]).promote("spam_nb", targets[loser], "production")
        assert retried.previous == winners[0].version
        assert retried.revision == winners[0].revision + 1

    final = race_registry.get_alias("spam_nb", "production")
    assert final is not None
    history = list(final.history)
    assert final.revision == 1 + 2 * rounds == len(history)
    assert [h["revision"] for h in history] == list(range(1, len(history) + 1))
    for before, after in itertools.pairwise(history):
        assert after["previous"] == before["version"], "a move was lost"
    assert history[-1]["version"] == final.version


@pytest.fixture(scope="module")
def two_versions(moto_endpoint: str, spam_nb_dir: Path) -> Path:
    create_bucket(BUCKET)
    for alias in ("production", None):
        result = maas("publish", str(spam_nb_dir), *(("--alias", alias) if alias else ()))
        assert result.returncode == 0, result.stderr
    return spam_nb_dir


def test_the_models_commands_promote_rollback_list_retire_and_delete(two_versions: Path) -> None:
    promoted = maas("models", "promote", "spam_nb", "2", "--alias", "production")
    assert promoted.returncode == 0, promoted.stderr
    assert "spam_nb: alias production -> v2 (was v1, revision 2)" in promoted.stdout
    refused = maas("models", "retire", "spam_nb", "2")
    assert refused.returncode == 1
    assert "cannot retire spam_nb version 2: alias(es) production point to it" in refused.stderr
    rolled = maas("models", "rollback", "spam_nb", "--alias", "production")
    assert "alias production rolled back -> v1 (was v2, revision 3)" in rolled.stdout, rolled.stderr
    listed = maas("models", "aliases", "spam_nb", "--history")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:4] == ["production", "v1", "v2", "3"]
    assert "rollback v2 -> v1" in listed.stdout and "promote v1 -> v2" in listed.stdout
    not_retired = maas("models", "delete", "spam_nb", "2")
    assert not_retired.returncode == 1 and "it is active; retire it first" in not_retired.stderr
    assert maas("models", "retire", "spam_nb", "2").returncode == 0
    described = json.loads(maas("models", "describe", "spam_nb", "--version", "2").stdout)
    assert (described["status"], described["aliases"]) == ("retired", [])
    deleted = maas("models", "delete", "spam_nb", "2")
    assert deleted.returncode == 0, deleted.stderr
    assert "spam_nb v2: deleted (3 object versions removed)" in deleted.stdout
    gone = maas("models", "describe", "spam_nb", "--version", "2")
    assert gone.returncode == 1 and "no version 2" in gone.stderr


def test_diff_and_publish_compatibility_from_the_command_line(two_versions: Path, tmp_path: Path) -> None:
    diff = maas("models", "diff", "spam_nb", "1", "1")
    assert diff.returncode == 0, diff.stderr
    report = json.loads(diff.stdout)
    assert report["compatible"] is True and report["signature_changes"] == []
    assert report["metrics"]["accuracy"]["delta"] == 0
    changed = tmp_path / "relabelled"
    changed.mkdir()
    for item in two_versions.iterdir():
        (changed / item.name).write_bytes(item.read_bytes())
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["labels"] = ["legit", "junk"]
    (changed / "manifest.json").write_text(json.dumps(manifest))
    refused = maas("publish", str(changed))
    assert refused.returncode == 1
    assert "incompatible with version 1 (alias 'production')" in refused.stderr
    assert "labels changed ['ham', 'spam'] -> ['legit', 'junk']" in refused.stderr
    forced = maas("publish", str(changed), "--allow-breaking")
    assert forced.returncode == 0, forced.stderr
    described = json.loads(maas("models", "describe", "spam_nb", "--version", forced.stdout.strip()).stdout)
    assert described["labels"] == ["legit", "junk"] and described["aliases"] == []
