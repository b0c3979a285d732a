"""The model lifecycle on the registry: publish safely, promote, roll back, retire, delete, inspect.

This is the Python API that ``maas models ...`` wraps. It runs on an operator's (or CI's) machine
with the registry publisher/admin policy; the serving functions never import it and never hold
write permissions. The rules live here, the S3 mechanics in ``maas.core.registry``:

- an alias move is conditional on the alias object's ETag: of two concurrent moves one wins and
  the other fails with ``Conflict`` (code ``alias_conflict``) and can simply be retried;
- a version an alias points to cannot be retired; only a retired version can be deleted;
- publishing refuses a signature that would break the alias's clients unless ``allow_breaking``.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maas.core.errors import Conflict, IntegrityError, MaasError, NotFound
from maas.core.registry import (
    STATUS_RETIRED,
    Alias,
    Progress,
    PublishedVersion,
)
from maas.core.settings import DEFAULT_ALIAS
from ops.registry_admin import RegistryAdmin, check_manifest, read_manifest_file

# A reloaded version must answer its stored sample as it did when it was written.
SAMPLE_PROBABILITY_TOLERANCE = 1e-4
SAMPLE_VALUE_RTOL = 1e-4
SAMPLE_VALUE_ATOL = 1e-5
SAMPLE_MIN_COSINE = 0.9999


@dataclass(frozen=True, slots=True)
class SignatureChange:
    """One difference between two signatures; ``breaking`` when a client of the old one can fail."""

    kind: str  # "input" | "output" | "labels"
    name: str
    change: str
    breaking: bool

    def __str__(self) -> str:
        return (
            f"labels {self.change}" if self.kind == "labels" else f"{self.kind} {self.name!r} {self.change}"
        )


def _specs(signature: dict[str, Any], side: str) -> dict[str, dict[str, Any]]:
    return {str(spec["name"]): spec for spec in signature.get(side, [])}


def _shape_text(shape: list[Any]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def signature_changes(old: dict[str, Any], new: dict[str, Any]) -> list[SignatureChange]:
    """What changed from ``old`` to ``new`` manifests' signatures (and labels), breaking or not.

    Breaking: an input or output removed, an input added, a dtype or a fixed dimension changed,
    the label set changed. Not breaking: an output added.
    """
    changes: list[SignatureChange] = []
    for side, kind in (("inputs", "input"), ("outputs", "output")):
        before = _specs(old.get("signature", {}), side)
        after = _specs(new.get("signature", {}), side)
        for name in sorted(before.keys() - after.keys()):
            changes.append(SignatureChange(kind, name, "was removed", True))
        for name in sorted(after.keys() - before.keys()):
            changes.append(SignatureChange(kind, name, "was added", kind == "input"))
        for name in sorted(before.keys() & after.keys()):
            was, now = before[name], after[name]
            if was.get("dtype") != now.get("dtype"):
                changes.append(
                    SignatureChange(
                        kind, name, f"changed dtype {was.get('dtype')} -> {now.get('dtype')}", True
                    )
                )
            if list(was.get("shape", [])) != list(now.get("shape", [])):
                changes.append(
                    SignatureChange(
                        kind,
                        name,
                        f"changed shape {_shape_text(was.get('shape', []))} -> {_shape_text(now.get('shape', []))}",
                        True,
                    )
                )
    old_labels, new_labels = list(old.get("labels", [])), list(new.get("labels", []))
    if old_labels != new_labels:
        changes.append(SignatureChange("labels", "labels", f"changed {old_labels} -> {new_labels}", True))
    return changes


def _quiet(_: str) -> None:
    """No progress lines."""


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    return abs(float(a) - float(b)) <= atol + rtol * abs(float(b))


def _cosine(a: list[float], b: list[float]) -> float:
    if len(a) != len(b) or not a:
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5
    return dot / norm if norm else 0.0


def answer_differences(stored: list[dict[str, Any]], answered: list[dict[str, Any]]) -> list[str]:
    """How the answers to the stored sample differ from the stored predictions (empty: the same)."""
    if len(stored) != len(answered):
        return [f"{len(answered)} predictions for {len(stored)} stored"]
    problems: list[str] = []
    for row, (want, got) in enumerate(zip(stored, answered, strict=True)):
        if "embedding" in want:
            cosine = _cosine(want["embedding"], got.get("embedding") or [])
            if cosine < SAMPLE_MIN_COSINE:
                problems.append(f"row {row}: embedding at cosine {cosine:.6f} to the stored one")
        if "label" in want and want.get("label") != got.get("label"):
            problems.append(f"row {row}: label {got.get('label')!r}, stored {want.get('label')!r}")
        for label, p in dict(want.get("probabilities", {})).items():
            q = got.get("probabilities", {}).get(label)
            if q is None or abs(float(q) - float(p)) > SAMPLE_PROBABILITY_TOLERANCE:
                problems.append(f"row {row}: probability of {label!r} {q}, stored {p}")
        wanted = [want["value"]] if "value" in want else list(want.get("values", []))
        given = [got.get("value")] if "value" in want else list(got.get("values", []))
        if len(wanted) != len(given) or not all(
            g is not None and _close(g, w, SAMPLE_VALUE_RTOL, SAMPLE_VALUE_ATOL)
            for g, w in zip(given, wanted, strict=False)
        ):
            problems.append(f"row {row}: value(s) {given}, stored {wanted}")
    return problems


def _metric_delta(before: Any, after: Any) -> float | None:
    if isinstance(before, int | float) and isinstance(after, int | float):
        return round(float(after) - float(before), 6)
    return None


class Lifecycle:
    """Lifecycle operations over one registry bucket."""

    def __init__(self, registry: RegistryAdmin) -> None:
        self.registry = registry

    # --- publishing --------------------------------------------------------------------------

    def publish(
        self,
        model_dir: Path,
        *,
        alias: str | None = None,
        allow_breaking: bool = False,
        progress: Progress | None = None,
    ) -> PublishedVersion:
        """Publish a version folder, refusing a signature that breaks the alias's current version.

        The check is against ``alias`` (default: ``production``) if it points anywhere; with
        ``alias`` given, the alias is then moved to the new version.
        """
        manifest = read_manifest_file(model_dir)
        name = check_manifest(manifest, model_dir).name
        self.registry.check_bucket()
        target = self.registry.get_alias(name, alias or DEFAULT_ALIAS) if name else None
        if target is not None and not allow_breaking:
            current = self.registry.read_manifest(name, target.version)
            breaking = [c for c in signature_changes(current, manifest) if c.breaking]
            if breaking:
                raise Conflict(
                    f"refusing to publish {name}: its signature is incompatible with version {target.version} "
                    f"(alias {target.alias!r}): "
                    + "; ".join(map(str, breaking))
                    + ". Pass --allow-breaking to publish anyway.",
                    code="incompatible_signature",
                    field="signature",
                )
        published = self.registry.publish(model_dir, progress=progress or _quiet)
        if alias:
            self.promote(published.name, published.version, alias, progress=progress)
        return published

    # --- aliases -----------------------------------------------------------------------------

    def promote(self, name: str, version: int, alias: str, *, progress: Progress | None = None) -> Alias:
        """Move ``alias`` to ``version`` once it loads and answers its stored sample; fails with
        ``alias_conflict`` if someone moved the alias meanwhile."""
        self.registry.check_bucket()
        self.check_answers(name, int(version), progress=progress)
        return self.registry.set_alias(name, alias, int(version), action="promote")

    def check_answers(self, name: str, version: int, *, progress: Progress | None = None) -> None:
        """Load the published version as a serving function would (download, sha256, a fresh
        onnxruntime session, its task type) and make it answer its stored sample like it did when
        it was written; refuse with the reason if it cannot. A version without a stored sample
        (published before samples were stored) is only loaded, with a warning."""
        from maas.core.predictor import Predictor
        from maas.core.store import ModelStore
        from maas.core.tasks import task_for
        from maas.core.tasks.base import Classifier

        say = progress or _quiet
        refuse = f"refusing to move an alias to {name} v{version}"
        with tempfile.TemporaryDirectory(prefix="maas-check-") as cache:
            local = ModelStore(self.registry, Path(cache)).fetch(name, version)
            try:
                predictor = Predictor(local.model_path)
                task = task_for(predictor, local.manifest, local.directory)
            except MaasError as error:
                raise Conflict(
                    f"{refuse}: it does not load: {error.message}", code="version_unloadable"
                ) from None
            except Exception as error:  # onnxruntime's own errors for a graph it cannot open
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise Conflict(f"{refuse}: it does not load: {first}", code="version_unloadable") from None
            sample = local.manifest.get("sample")
            if isinstance(sample, dict) and isinstance(sample.get("token_ids"), list):
                self._check_greedy_sample(task, sample, refuse)
                say(f"{name} v{version} loads and answers its stored greedy sample")
                return
            if not isinstance(sample, dict) or not sample.get("instances"):
                _warn(f"{name} v{version} has no stored sample: it loads, its answers were not checked")
                return
            if not isinstance(task, Classifier):
                say(f"{name} v{version} loads; a {task.name} sample is not re-answered")
                return
            try:
                answered = task.predict(task.prepare(list(sample["instances"])))
            except MaasError as error:
                raise Conflict(
                    f"{refuse}: it cannot answer its stored sample: {error.message}", code="sample_failed"
                ) from None
            stored = sample.get("predictions")
            if isinstance(stored, list):
                problems = answer_differences(stored, answered)
                if problems:
                    raise Conflict(
                        f"{refuse}: its answers to the stored sample differ from those written with it: "
                        + "; ".join(problems[:3]),
                        code="sample_mismatch",
                    )
            say(f"{name} v{version} loads and answers its stored sample ({len(answered)} rows)")

    @staticmethod
    def _check_greedy_sample(task: Any, sample: dict[str, Any], refuse: str) -> None:
        """A causal LM's stored sample: its prompt decoded greedily gives the stored tokens (cut
        at the first end-of-sequence token, which is not stored)."""
        from maas.core.tasks.causal_lm import CausalLM

        if not isinstance(task, CausalLM):
            raise Conflict(f"{refuse}: a greedy token sample needs a causal-lm task", code="sample_failed")
        try:
            request = task.parse(
                {
                    "prompt": sample["prompt"],
                    "max_new_tokens": int(sample["max_new_tokens"]),
                    "temperature": 0,
                }
            )
            (answer,) = task.complete(request)
        except (MaasError, KeyError, TypeError, ValueError) as error:
            raise Conflict(
                f"{refuse}: it cannot answer its stored sample: {error}", code="sample_failed"
            ) from None
        tokens = list(answer.token_ids)
        if answer.finish_reason == "stop" and tokens and tokens[-1] in task.eos_token_ids:
            tokens.pop()
        if tokens != list(sample["token_ids"]):
            raise Conflict(
                f"{refuse}: its greedy tokens {tokens} differ from those written with it {sample['token_ids']}",
                code="sample_mismatch",
            )

    def rollback(self, name: str, alias: str) -> Alias:
        """Move ``alias`` back to the version it pointed to before its last move."""
        current = self._alias(name, alias)
        if current.previous is None:
            raise Conflict(
                f"alias {alias!r} of {name!r} has no previous version to roll back to",
                code="no_previous_version",
                field="alias",
            )
        return self.registry.set_alias(name, alias, current.previous, action="rollback", expected=current)

    def aliases(self, name: str) -> list[Alias]:
        return self.registry.list_aliases(name)

    def history(self, name: str, alias: str) -> list[dict[str, Any]]:
        return list(self._alias(name, alias).history)

    def _alias(self, name: str, alias: str) -> Alias:
        found = self.registry.get_alias(name, alias)
        if found is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}", code="alias_not_found", field="alias")
        return found

    def aliases_of(self, name: str, version: int) -> list[str]:
        return sorted(a.alias for a in self.registry.list_aliases(name) if a.version == int(version))

    # --- retiring and deleting ---------------------------------------------------------------

    def retire(self, name: str, version: int) -> None:
        """Mark a version retired (its object tag); refused while an alias points to it."""
        self.registry.read_manifest(name, version)
        pointing = self.aliases_of(name, version)
        if pointing:
            raise Conflict(
                f"cannot retire {name} version {version}: alias(es) {', '.join(pointing)} point to it; "
                "promote another version first",
                code="version_aliased",
                field="version",
            )
        self.registry.set_status(name, version, STATUS_RETIRED)

    def delete(self, name: str, version: int) -> int:
        """Remove a retired version's objects (all their S3 versions); refused unless retired."""
        self.registry.read_manifest(name, version)
        status = self.registry.status(name, version)
        if status != STATUS_RETIRED:
            raise Conflict(
                f"cannot delete {name} version {version}: it is {status}; retire it first",
                code="version_not_retired",
                field="version",
            )
        pointing = self.aliases_of(name, version)
        if pointing:  # retired versions cannot be aliased, but an old alias may predate the tag
            raise Conflict(
                f"cannot delete {name} version {version}: alias(es) {', '.join(pointing)} point to it",
                code="version_aliased",
                field="version",
            )
        return self.registry.delete_version(name, version)

    # --- inspecting --------------------------------------------------------------------------

    def describe(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Status, aliases pointing at the version, metrics, parity, provenance, sha256 and integrity."""
        aliases = self.registry.list_aliases(name)
        if version is None:
            versions = self.registry.list_versions(name)
            if not versions:
                raise NotFound(f"model {name!r} has no versions in s3://{self.registry.bucket}")
            default = next((a for a in aliases if a.alias == DEFAULT_ALIAS), None)
            version = default.version if default else versions[-1]
        manifest = self.registry.read_manifest(name, version)
        publication = self.registry.read_publication(name, version)
        return {
            "name": name,
            "version": version,
            "status": self.registry.status(name, version),
            "aliases": sorted(a.alias for a in aliases if a.version == version),
            "task": manifest.get("task"),
            "created_at": manifest.get("created_at"),
            "published_at": manifest.get("published_at"),
            "sha256": manifest.get("model", {}).get("sha256"),
            "size": manifest.get("model", {}).get("size"),
            "labels": manifest.get("labels"),
            "signature": manifest.get("signature"),
            "metrics": manifest.get("metrics"),
            "parity": manifest.get("parity"),
            "framework": manifest.get("framework"),
            "onnx": manifest.get("onnx"),
            "provenance": manifest.get("provenance"),
            "publication": publication,
            "integrity": self._integrity(name, version, publication),
        }

    def _integrity(self, name: str, version: int, publication: dict[str, Any] | None) -> str:
        """``intact``, or what a serving function would refuse: an incomplete or replaced version."""
        if publication is None:
            return "incomplete: no publication record"
        replaced = [
            filename
            for filename, recorded in sorted(publication.get("objects", {}).items())
            if self.registry.object_version_id(name, version, filename) != recorded.get("version_id")
        ]
        if replaced:
            return f"replaced after publication: {', '.join(replaced)}"
        if self.registry.verifier is not None:  # MANIFEST_SIGNING_KEY: what a function would check
            raw_manifest = self.registry.read_manifest_bytes(name, version)
            try:
                self.registry.check_signature(name, version, raw_manifest[2], raw_manifest[0], publication)
            except IntegrityError as error:
                return f"{error.code}: {error.message}"
        return "intact"

    def diff(self, name: str, first: int, second: int) -> dict[str, Any]:
        """Two versions side by side: metrics (with deltas) and signature changes from first to second."""
        old = self.registry.read_manifest(name, first)
        new = self.registry.read_manifest(name, second)
        old_metrics, new_metrics = old.get("metrics", {}), new.get("metrics", {})
        metrics = {
            key: {
                str(first): old_metrics.get(key),
                str(second): new_metrics.get(key),
                "delta": _metric_delta(old_metrics.get(key), new_metrics.get(key)),
            }
            for key in sorted(old_metrics.keys() | new_metrics.keys())
            if not isinstance(old_metrics.get(key, new_metrics.get(key)), dict | list)
        }
        changes = signature_changes(old, new)
        return {
            "name": name,
            "versions": [first, second],
            "status": {
                str(first): self.registry.status(name, first),
                str(second): self.registry.status(name, second),
            },
            "metrics": metrics,
            "signature_changes": [
                {"kind": c.kind, "name": c.name, "change": c.change, "breaking": c.breaking} for c in changes
            ],
            "compatible": not any(c.breaking for c in changes),
            "sha256": {
                str(first): old.get("model", {}).get("sha256"),
                str(second): new.get("model", {}).get("sha256"),
            },
        }
