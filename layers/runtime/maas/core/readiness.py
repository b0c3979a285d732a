"""Whether a published version can be served, and if not why, read from the registry alone.

The repository index (the registry function) answers this for every version without opening an
ONNX session, so it imports no onnxruntime: it checks what a load would check first. The version
is active; its publication record exists (the upload finished); the manifest and every file it
names are the objects that record pins (none replaced); with ``MANIFEST_SIGNING_KEY`` set, the manifest is signed by that key
(KMS ``Verify``); and the manifest's task is one this
runtime serves. A version that passes can still fail in ``ModelStore.fetch`` on a sha256 mismatch:
that check needs the bytes, and the serving function makes it.
"""

from __future__ import annotations

from maas.core.errors import IntegrityError, MaasError, NotFound
from maas.core.manifest import Manifest, ManifestError
from maas.core.registry import MANIFEST_NAME, STATUS_ACTIVE, ModelRegistry
from maas.core.tasks import unservable_task


def unready_reason(registry: ModelRegistry, name: str, version: int) -> str | None:
    """None when ``name`` version ``version`` can be served; else the reason, in one sentence."""
    try:
        status = registry.status(name, version)
        if status != STATUS_ACTIVE:
            return status  # "retired": the status tag says it all
        publication = registry.read_publication(name, version)
        if publication is None:
            return "incomplete: no publication record (the upload did not finish)"
        recorded = {key: meta.get("version_id") for key, meta in publication.get("objects", {}).items()}
        manifest, manifest_vid, raw = registry.read_manifest_bytes(name, version)
        if manifest_vid != recorded.get(MANIFEST_NAME):
            return f"{MANIFEST_NAME} was replaced after publication"
        try:
            registry.check_signature(name, version, raw, manifest, publication)
        except IntegrityError as error:
            return error.message
        try:
            typed = Manifest.from_dict(manifest)
        except ManifestError as error:
            return f"{MANIFEST_NAME} is malformed: {error.message}"
        task = unservable_task(manifest)
        if task is not None:
            return task
        for filename in typed.files:
            if filename not in recorded:
                return f"{filename} is not in the publication record"
            if registry.object_version_id(name, version, filename) != recorded[filename]:
                return f"{filename} was replaced after publication"
    except NotFound as error:
        return error.message
    except (MaasError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"unreadable: {error}"
    return None
