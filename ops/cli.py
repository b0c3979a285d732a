"""``maas``: train, publish and inspect models, invoke and serve functions locally, run the demo."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from maas.core.errors import MaasError, error_detail
from maas.core.registry import Alias
from maas.core.signing import ManifestVerifier
from ops import project
from ops.lifecycle import Lifecycle
from ops.registry_admin import RegistryAdmin

# Trainers are imported only when asked for: scikit-learn and TensorFlow are slow to import.
TRAINERS = {
    "spam_nb": "training.models.spam_nb",
    "spam_lstm": "training.models.spam_lstm",
    "digits_cnn": "training.models.digits_cnn",
    "spam_mlp": "training.models.spam_mlp",
    "moby_gen": "training.models.moby_gen",
    "minilm": "training.models.minilm",
    "spam_minilm": "training.models.spam_minilm",
    "gemma": "training.models.gemma",
}


def _registry(args: argparse.Namespace) -> RegistryAdmin:
    bucket = args.bucket or os.environ.get("MODEL_BUCKET")
    signing_key = None
    if getattr(args, "func", None) is cmd_publish:  # only publish signs
        signing_key = args.signing_key or os.environ.get("MANIFEST_SIGNING_KEY") or None
        if args.stack:  # the deployed stack names both: its bucket and the key its functions verify with
            from ops.stack import BUCKET_OUTPUT, SIGNING_KEY_OUTPUT, output, stack_outputs

            outputs = stack_outputs(args.stack)
            bucket = args.bucket or output(outputs, args.stack, BUCKET_OUTPUT, "--bucket")
            signing_key = args.signing_key or output(outputs, args.stack, SIGNING_KEY_OUTPUT, "--signing-key")
    if not bucket:
        raise MaasError("no registry bucket: pass --bucket or set MODEL_BUCKET", code="configuration_error")
    verify_key = os.environ.get("MANIFEST_SIGNING_KEY") or None  # describe checks as a function would
    verifier = None if verify_key is None else ManifestVerifier(verify_key)
    return RegistryAdmin(bucket, signing_key=signing_key, verifier=verifier)


QUANTIZABLE = ["minilm", "gemma"]


def cmd_train(args: argparse.Namespace) -> int:
    from training.options import TrainOptions

    trainer = importlib.import_module(TRAINERS[args.model])
    options = TrainOptions(
        out=Path(args.out),
        seed=args.seed,
        epochs=args.epochs,
        data=Path(args.data) if args.data else None,
        dataset=args.dataset,
        limit=args.limit,
        quiet=args.quiet,
        quantize=args.quantize,
    )
    if args.quantize and not getattr(trainer, "QUANTIZABLE", False):
        raise MaasError(f"{args.model} has no quantisation gate: --quantize is for {QUANTIZABLE}")
    manifest = trainer.train(options)
    metrics, parity = manifest["metrics"], manifest["parity"]
    held_out = ", ".join(
        f"{name} {metrics[name]}"
        for name in ("accuracy", "f1", "perplexity", "paraphrase_nearer")
        if name in metrics
    )
    cosine = f" (min cosine {parity['min_cosine']:.6f})" if "min_cosine" in parity else ""
    print(
        f"{args.model}: {held_out}, parity {parity['label_disagreements']} {parity.get('compared', 'labels')} "
        f"differ, max |Δ{parity.get('measure', 'probability')}| {parity['max_abs_diff']:.2e}{cosine}, "
        f"opset {manifest['onnx']['opsets'].get('ai.onnx')} -> {args.out}"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from maas.core.tasks import TASKS
    from training.conversion import advice, one_line
    from training.hf_import import is_hf_folder
    from training.importer import import_model, read_labels, read_sample, read_target

    if args.task is not None and args.task not in TASKS:
        raise MaasError(
            f"unknown task {args.task!r}: the runtime serves {sorted(TASKS)}", code="unknown_task"
        )
    if _is_llm(Path(args.source)):
        return _import_llm(args)
    if args.chat_template:
        raise MaasError(
            "--chat-template is for decoder LLMs (a GGUF, a ...ForCausalLM folder, a KV-cache ONNX folder)"
        )
    if is_hf_folder(Path(args.source)):
        return _import_transformer(args)
    sample = read_sample(Path(args.sample)) if args.sample else None
    target = read_target(Path(args.target)) if args.target else None
    labels = read_labels(Path(args.labels)) if args.labels else None
    try:
        manifest = import_model(
            Path(args.source),
            name=args.name,
            out=Path(args.out),
            X=sample,
            y=target,
            labels=labels,
            task=args.task,
            quiet=args.quiet,
            quantize=args.quantize,
        )
    except MaasError:
        raise
    except Exception as error:  # a converter's own error: one line (the detail with --verbose)
        raise MaasError(
            f"cannot convert {args.source} to ONNX: {type(error).__name__}: {one_line(error)}; "
            f"{advice(error)}",
            code="conversion_failed",
        ) from error
    parity = manifest["parity"]
    metrics = manifest.get("metrics") or {}
    held_out = ", ".join(
        f"{key} {metrics[key]}" for key in ("accuracy", "f1", "mae", "rmse", "r2") if key in metrics
    )
    print(
        f"{args.name}: {manifest['task']}"
        + (f", {len(manifest['labels'])} labels {manifest['labels']}" if manifest["labels"] else "")
        + (f", held-out {held_out}" if held_out else "")
        + f", parity {parity['label_disagreements']} of {parity['rows']} {parity['compared']} differ, "
        + (
            f"max |Δvalue| {parity['max_abs_value_diff']:.2e} (relative {parity['max_rel_value_diff']:.2e}; "
            f"tolerance {parity['rtol']:g}·|value| + {parity['atol']:g})"
            if "max_abs_value_diff" in parity
            else f"max |Δ{parity['measure']}| {parity['max_abs_diff']:.2e}"
        )
        + f" -> {args.out}"
    )
    return 0


def _is_llm(source: Path) -> bool:
    from training.llm.sources import is_llm_source

    return is_llm_source(source)


def _import_llm(args: argparse.Namespace) -> int:
    """A decoder LLM: each variant gated against the fp32 PyTorch model (docs/how-to/llm.md)."""
    from training.llm.sources import import_any

    written = import_any(
        Path(args.source),
        name=args.name,
        out=Path(args.out),
        quantize=args.quantize,
        chat_template=Path(args.chat_template) if args.chat_template else None,
        quiet=args.quiet,
    )
    table = next(iter(written.values()))["metrics"]["variants"]
    for variant, figures in table.items():
        verdict = "written" if variant in written else "NOT written: " + "; ".join(figures.get("unmet", []))
        print(
            f"{args.name} {variant}: {figures['bytes'] / 1e6:.1f} MB, perplexity {figures['perplexity']:.4f}, "
            f"greedy agreement {figures['greedy_agreement']:.4f}, mean KL {figures['mean_kl']:.2e}: {verdict}"
        )
    return 0


def _import_transformer(args: argparse.Namespace) -> int:
    """A Hugging Face ONNX folder (model.onnx, tokenizer.json, config.json), checked on --sample."""
    from training.hf_import import import_transformer
    from training.importer import read_sample

    if not args.sample:
        raise MaasError("a transformer folder needs --sample: a .jsonl of texts, one JSON string a line")
    texts = read_sample(Path(args.sample))
    manifest = import_transformer(
        Path(args.source),
        name=args.name,
        out=Path(args.out),
        texts=list(texts),
        task=args.task,
        quantize=args.quantize,
        quiet=args.quiet,
    )
    parity = manifest["parity"]
    figure = (
        f"min cosine {parity['min_cosine']:.6f}"
        if "min_cosine" in parity
        else f"max |Δprobability| {parity['max_abs_diff']:.2e}"
    )
    labels = f", labels {manifest['labels']}" if manifest["labels"] else ""
    print(
        f"{args.name}: {manifest['task']}{labels}, parity on {parity['rows']} texts: {figure} -> {args.out}"
    )
    return 0


def _lifecycle(args: argparse.Namespace) -> Lifecycle:
    return Lifecycle(_registry(args))


def cmd_publish(args: argparse.Namespace) -> int:
    from training.progress import Progress

    published = _lifecycle(args).publish(
        Path(args.dir), alias=args.alias, allow_breaking=args.allow_breaking, progress=Progress("publish")
    )
    if args.alias:
        print(f"alias {args.alias} -> {published.name} v{published.version}", file=sys.stderr)
    print(published.version)
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    models = registry.list_models()
    if not models:
        print(f"s3://{registry.bucket} holds no models")
        return 0
    print(f"{'MODEL':<20} {'VERSIONS':<20} ALIASES")
    for name in models:
        versions = registry.list_versions(name)
        aliases = ", ".join(f"{a.alias}->v{a.version}" for a in registry.list_aliases(name)) or "-"
        print(f"{name:<20} {','.join(map(str, versions)) or '-':<20} {aliases}")
    return 0


def cmd_models_describe(args: argparse.Namespace) -> int:
    print(json.dumps(_lifecycle(args).describe(args.name, args.version), indent=2))
    return 0


def _alias_line(alias: Alias) -> str:
    previous = "-" if alias.previous is None else f"v{alias.previous}"
    return f"{alias.alias:<16} v{alias.version:<8} {previous:<9} {alias.revision:<9} {alias.updated_at}"


def cmd_models_promote(args: argparse.Namespace) -> int:
    from training.progress import Progress

    moved = _lifecycle(args).promote(args.name, args.version, args.alias, progress=Progress("promote"))
    print(
        f"{args.name}: alias {moved.alias} -> v{moved.version} (was {_was(moved)}, revision {moved.revision})"
    )
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    moved = _lifecycle(args).rollback(args.name, args.alias)
    print(
        f"{args.name}: alias {moved.alias} rolled back -> v{moved.version} "
        f"(was {_was(moved)}, revision {moved.revision})"
    )
    return 0


def _was(alias: Alias) -> str:
    return "unset" if alias.previous is None else f"v{alias.previous}"


def cmd_models_aliases(args: argparse.Namespace) -> int:
    lifecycle = _lifecycle(args)
    aliases = lifecycle.aliases(args.name)
    if not aliases:
        print(f"{args.name} has no aliases")
        return 0
    print(f"{'ALIAS':<16} {'VERSION':<9} {'PREVIOUS':<9} {'REVISION':<9} UPDATED")
    for alias in aliases:
        print(_alias_line(alias))
    if args.history:
        for alias in aliases:
            print(f"\nhistory of {alias.alias}:")
            for entry in alias.history:
                before = "-" if entry.get("previous") is None else f"v{entry['previous']}"
                print(
                    f"  r{entry['revision']:<4} {entry['at']}  {entry['action']} {before} -> v{entry['version']}"
                )
    return 0


def cmd_models_retire(args: argparse.Namespace) -> int:
    _lifecycle(args).retire(args.name, args.version)
    print(f"{args.name} v{args.version}: retired (no longer served)")
    return 0


def cmd_models_delete(args: argparse.Namespace) -> int:
    removed = _lifecycle(args).delete(args.name, args.version)
    print(f"{args.name} v{args.version}: deleted ({removed} object versions removed)")
    return 0


def cmd_models_diff(args: argparse.Namespace) -> int:
    print(json.dumps(_lifecycle(args).diff(args.name, args.v1, args.v2), indent=2))
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    from ops.local import invoke, read_event

    overrides = dict(item.split("=", 1) for item in args.env)
    if args.bucket:
        overrides["MODEL_BUCKET"] = args.bucket
    response = invoke(args.model, read_event(Path(args.event)), overrides)
    print(json.dumps(response, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import signal

    from ops.serve import DEFAULT_BUCKET, serve

    root = project.find(args.project)
    # a terminated server unwinds (its record in the project goes) as an interrupted one does
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    bucket = args.bucket or os.environ.get("MODEL_BUCKET") or DEFAULT_BUCKET
    serve(args.host, args.port, bucket, os.environ, root)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from ops.chat import Chat, run

    settings = {
        key: value
        for key, value in (
            ("max_tokens", args.max_tokens),
            ("temperature", args.temperature),
            ("seed", args.seed),
        )
        if value is not None
    }
    return run(Chat(args.url, args.model, args.system, settings), args.message)


def _s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key or key.endswith("/"):
        raise MaasError(f"{url!r} is not an object URL: s3://BUCKET/inputs/MODEL/large/FILE", code="bad_url")
    return bucket, key


def cmd_batch_run(args: argparse.Namespace) -> int:
    from ops.batch_run import STAND_IN, Progress, bar, run_job

    bucket, key = _s3_url(args.url)
    template = project.find(args.project) / "template.yaml"
    print(f"maas batch run: {STAND_IN}", file=sys.stderr)
    overrides = {"MODEL_BUCKET": args.bucket} if args.bucket else {}

    def report(progress: Progress) -> None:
        if not args.quiet:
            line = f"\r{bar(progress.done, progress.total)} {progress.done}/{progress.total} batches, {progress.rows} rows"
            print(line + (f", {progress.failed} failed" if progress.failed else ""), end="", file=sys.stderr)

    try:
        result = run_job(
            args.model,
            bucket,
            key,
            parallel=args.parallel,
            overrides=overrides,
            template=template,
            progress=Progress(report=report),
        )
    finally:
        if not args.quiet:
            print(file=sys.stderr)  # end the progress line: an error goes on a line of its own
    out = result.output
    print(
        f"{out['rows_read']} rows read: {out['rows_scored']} scored, {out['rows_refused']} refused, "
        f"by {args.model} version {out['model_version']} in {result.batches} batches "
        f"({args.parallel} at a time), {result.seconds:.1f} s, {out['rows_read'] / max(result.seconds, 1e-9):.0f} rows/s"
    )
    print(f"summary s3://{bucket}/{out['success_object']}")
    return 0


def cmd_batch_start(args: argparse.Namespace) -> int:
    from ops.batch_jobs import follow, start

    bucket, key = _s3_url(args.url)
    execution = start(args.model, bucket, key, state_machine=args.state_machine, stack=args.stack)
    print(execution)
    if args.no_follow:
        return 0
    return follow(execution)


def cmd_openapi(args: argparse.Namespace) -> int:
    from ops.openapi import check, write

    path = Path(args.out) if args.out else project.find(args.project) / "openapi.json"
    if args.check:
        problems = check(path)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {'out of date' if problems else 'up to date'}")
        return 1 if problems else 0
    write(path)
    print(f"wrote {path}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from ops.metrics_report import format_table, plot, summarise

    path = Path(args.logfile)
    if not path.is_file():
        raise MaasError(f"{path} does not exist", code="not_found")
    with path.open(encoding="utf-8", errors="replace") as lines:
        summaries = summarise(lines)
    print(format_table(summaries))
    if args.plot:
        plot(summaries, Path(args.plot))
        print(f"plot written to {args.plot}")
    return 0


def cmd_template(args: argparse.Namespace) -> int:
    from ops import template_gen

    root = project.find(args.project)
    if args.write:
        changed = template_gen.write(root)
        print(f"{root / 'template.yaml'} " + ("written" if changed else "already up to date"))
        return 0
    problem = template_gen.stale(root)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    print(f"{root / 'template.yaml'}: up to date")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from ops import events

    events.main(project.find(args.project))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ops.demo import run_demo

    return run_demo(Path(args.workdir), quick=args.quick)


def _project_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project",
        default=None,
        metavar="DIR",
        help="the project (a folder with models.toml; default: the nearest one from the current directory up)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maas", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train a model, export ONNX, check parity, write a version folder"
    )
    train.add_argument("model", choices=sorted(TRAINERS))
    train.add_argument(
        "--out", required=True, help="folder to write model.onnx, manifest.json and artifacts to"
    )
    train.add_argument("--seed", type=int, default=13)
    train.add_argument("--epochs", type=int, default=None, help="for neural models; ignored by naive Bayes")
    train.add_argument("--data", default=None, help="data file (or data home for downloaded data sets)")
    train.add_argument(
        "--dataset",
        default=None,
        help="spam_nb: spamassassin (default) or 20newsgroups; digits_cnn: digits (default) or cifar10",
    )
    train.add_argument(
        "--limit", type=int, default=None, help="train on a stratified sample of this many rows"
    )
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    train.add_argument(
        "--quantize", default=None, help="write the quantised variant (int8), behind its own parity gate"
    )
    train.set_defaults(func=cmd_train)

    imports = commands.add_parser(
        "import",
        help="bring your own model: export it to ONNX, check parity on a sample, write a version folder",
    )
    imports.add_argument(
        "source",
        help="a model file: .joblib/.pkl (scikit-learn, XGBoost, LightGBM), .keras/.h5, .onnx; a "
        "Hugging Face ONNX folder (model.onnx, tokenizer.json, config.json); or a decoder LLM: a .gguf, "
        "a ...ForCausalLM checkpoint folder, or an optimum / onnxruntime-genai folder with a KV cache",
    )
    imports.add_argument("--name", required=True, help="the model's name in the registry (an identifier)")
    imports.add_argument("--out", required=True, help="folder to write model.onnx and manifest.json to")
    imports.add_argument(
        "--sample", default=None, help="rows to check parity on: .csv (header), .jsonl or .npy"
    )
    imports.add_argument(
        "--target", default=None, help="the sample's true values: held-out metrics go in the manifest"
    )
    imports.add_argument(
        "--labels", default=None, help="one label a line, in the model's class order (checked against it)"
    )
    imports.add_argument("--task", default=None, help="override the inferred task (e.g. regression)")
    imports.add_argument(
        "--quantize",
        default=None,
        help="write the int8 variant instead, behind its own parity gate; for an LLM, variants besides fp32 "
        "(int4, int4-kquant, int8, mixed, or all), each written as <out>-<variant> if it passes",
    )
    imports.add_argument(
        "--chat-template", default=None, help="an LLM's Jinja chat template (overrides the source's)"
    )
    imports.add_argument("--quiet", action="store_true", help="no progress lines")
    imports.add_argument(
        "--verbose", action="store_true", help="on a failure, the converter's own traceback too"
    )
    imports.set_defaults(func=cmd_import)

    publish = commands.add_parser("publish", help="upload a version folder as the next version")
    publish.add_argument("dir")
    publish.add_argument("--bucket", default=None, help="registry bucket (default: $MODEL_BUCKET)")
    publish.add_argument(
        "--stack",
        default=None,
        help="a deployed stack: publish to its ModelsBucketName, signed with its ManifestSigningKeyArn",
    )
    publish.add_argument("--alias", default=None, help="point this alias at the new version")
    publish.add_argument(
        "--allow-breaking",
        action="store_true",
        help="publish even if the signature is incompatible with the alias's (default production) version",
    )
    publish.add_argument(
        "--signing-key",
        default=None,
        help="KMS asymmetric key (id, ARN or alias) that signs the manifest (default: $MANIFEST_SIGNING_KEY)",
    )
    publish.set_defaults(func=cmd_publish)

    models = commands.add_parser("models", help="what the registry holds")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    listing = model_commands.add_parser("list", help="models, their versions and aliases")
    listing.add_argument("--bucket", default=None)
    listing.set_defaults(func=cmd_models_list)
    describe = model_commands.add_parser("describe", help="one version's status, metrics, parity, provenance")
    describe.add_argument("name")
    describe.add_argument(
        "--version", type=int, default=None, help="default: the production alias, else latest"
    )
    describe.add_argument("--bucket", default=None)
    describe.set_defaults(func=cmd_models_describe)

    def model_command(
        name: str, help_text: str, func: Any, *, version: bool = False
    ) -> argparse.ArgumentParser:
        sub = model_commands.add_parser(name, help=help_text)
        sub.add_argument("name")
        if version:
            sub.add_argument("version", type=int)
        sub.add_argument("--bucket", default=None)
        sub.set_defaults(func=func)
        return sub

    promote = model_command(
        "promote", "move an alias to a version (ETag-conditional)", cmd_models_promote, version=True
    )
    promote.add_argument("--alias", default="production")
    rollback = model_command("rollback", "move an alias back to its previous version", cmd_models_rollback)
    rollback.add_argument("--alias", default="production")
    aliases = model_command(
        "aliases", "a model's aliases, their previous versions and revisions", cmd_models_aliases
    )
    aliases.add_argument("--history", action="store_true", help="also print each alias's moves")
    model_command(
        "retire",
        "mark a version retired; refused while an alias points to it",
        cmd_models_retire,
        version=True,
    )
    model_command("delete", "remove a retired version's objects", cmd_models_delete, version=True)
    diff = model_command("diff", "compare two versions' metrics and signatures", cmd_models_diff)
    diff.add_argument("v1", type=int)
    diff.add_argument("v2", type=int)

    invoke = commands.add_parser("invoke", help="run a function's handler in-process on an event (no Docker)")
    invoke.add_argument("model")
    invoke.add_argument("--event", required=True, help="event JSON file, e.g. events/spam_nb/predict.json")
    invoke.add_argument("--bucket", default=None, help="registry bucket (default: $MODEL_BUCKET)")
    invoke.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for the function"
    )
    invoke.set_defaults(func=cmd_invoke)

    serve = commands.add_parser(
        "serve", help="development server: template.yaml's HTTP API on a local port, real handlers, no Docker"
    )
    serve.add_argument("--port", type=int, default=3000, help="0 picks a free port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--bucket", default=None, help=f"registry bucket (default: $MODEL_BUCKET, else {'maas-local-models'})"
    )
    _project_option(serve)
    serve.set_defaults(func=cmd_serve)

    chat = commands.add_parser("chat", help="talk to an LLM: its replies stream in as they are generated")
    chat.add_argument("model", help="a registry model: name, name@version or name:alias")
    chat.add_argument(
        "--url",
        default=os.environ.get("MAAS_URL", "http://127.0.0.1:3000") + "/v1",
        help="the OpenAI base URL (default: $MAAS_URL/v1, else maas serve's http://127.0.0.1:3000/v1)",
    )
    chat.add_argument("--message", "-m", default=None, help="send one message and exit (else: read lines)")
    chat.add_argument("--system", default=None, help="a system message to start the conversation")
    chat.add_argument("--max-tokens", type=int, default=None)
    chat.add_argument("--temperature", type=float, default=None)
    chat.add_argument("--seed", type=int, default=None)
    chat.set_defaults(func=cmd_chat)

    batch = commands.add_parser("batch", help="batch jobs: a large S3 file through a Distributed Map")
    batch_commands = batch.add_subparsers(dest="batch_command", required=True)
    run = batch_commands.add_parser(
        "run",
        help="development stand-in for Step Functions: the model's state machine of template.yaml, "
        "here, against local S3 (AWS_ENDPOINT_URL), real handlers in-process",
    )
    run.add_argument("model")
    run.add_argument("url", help="s3://DATA-BUCKET/inputs/MODEL/large/FILE.csv|.jsonl")
    run.add_argument("--parallel", type=int, default=2, help="batches at a time (default 2)")
    run.add_argument("--bucket", default=None, help="registry bucket (default: $MODEL_BUCKET)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _project_option(run)
    run.set_defaults(func=cmd_batch_run)
    begin = batch_commands.add_parser(
        "start", help="start the deployed state machine on an S3 object and follow it with a progress bar"
    )
    begin.add_argument("model")
    begin.add_argument("url", help="s3://DATA-BUCKET/inputs/MODEL/large/FILE.csv|.jsonl")
    begin.add_argument("--state-machine", default=None, help="its ARN (default: found by name in the stack)")
    begin.add_argument(
        "--stack", default=os.environ.get("MAAS_STACK", "maas"), help="stack name (default maas)"
    )
    begin.add_argument("--no-follow", action="store_true", help="print the execution ARN and return")
    begin.set_defaults(func=cmd_batch_start)

    openapi = commands.add_parser("openapi", help="write the OpenAPI document generated from the routes")
    openapi.add_argument("--out", default=None, help="default: openapi.json in the project")
    openapi.add_argument("--check", action="store_true", help="exit 1 if the committed document is stale")
    _project_option(openapi)
    openapi.set_defaults(func=cmd_openapi)

    metrics = commands.add_parser("metrics", help="summarise the EMF metric lines of a handler log")
    metrics.add_argument("logfile", help="a log with the handlers' EMF lines (maas invoke/serve, the demo)")
    metrics.add_argument("--plot", default=None, metavar="FILE.png", help="also draw latency and label mix")
    metrics.set_defaults(func=cmd_metrics)

    template = commands.add_parser(
        "template", help="check (or --write) template.yaml, generated from infra/ and models.toml"
    )
    template.add_argument(
        "--write", action="store_true", help="write template.yaml (default: --check, exit 1 if stale)"
    )
    template.add_argument("--check", action="store_true", help="exit 1 if template.yaml is stale (default)")
    _project_option(template)
    template.set_defaults(func=cmd_template)

    events = commands.add_parser(
        "events",
        help="regenerate the sample events under events/ for every catalogue model (sam local generate-event)",
    )
    _project_option(events)
    events.set_defaults(func=cmd_events)

    demo = commands.add_parser("demo", help="moto server, train, publish, promote, invoke, stop")
    demo.add_argument("--workdir", default="build/demo")
    demo.add_argument("--quick", action="store_true", help="train the Keras models on small slices")
    demo.set_defaults(func=cmd_demo)
    return parser


def _aws_problem(error: Exception) -> str | None:
    """One line for what boto3 raises when the operator's AWS setup is wrong; None for a bug."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); "
            "for a local moto server any values do"
        )
    if isinstance(error, NoRegionError):
        return "no AWS region: set AWS_DEFAULT_REGION (e.g. us-east-1)"
    if isinstance(error, EndpointConnectionError):
        return (
            f"cannot reach {error.kwargs.get('endpoint_url', 'the AWS endpoint')}: is AWS_ENDPOINT_URL right?"
        )
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"AWS refused {error.operation_name}: {info.get('Code')}: {info.get('Message')}"
    return None


# Commands that run a function's handler keep the runtime's INFO logs (a download's MB/s, a load's
# time): they are that function's log stream. The others print their own results on stdout, which
# scripts read (`maas publish` prints the version), so the runtime only warns there.
HANDLER_COMMANDS = frozenset({"invoke", "serve"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from maas.core.observability import logger

    level = logger.log_level
    if args.command not in HANDLER_COMMANDS:
        logger.setLevel("WARNING")
    try:
        with _local_stand_in(args):
            return _run(args)
    finally:
        logger.setLevel(level)  # main() called in-process (tests, notebooks) leaves no trace


# Commands that talk to the registry: with no AWS endpoint configured, they use the moto server a
# running `maas serve` recorded in the project (see ops/project.py).
REGISTRY_COMMANDS = frozenset({"publish", "models", "invoke", "batch"})


@contextmanager
def _local_stand_in(args: argparse.Namespace) -> Iterator[None]:
    stand_in = None
    if args.command in REGISTRY_COMMANDS and not os.environ.get("AWS_ENDPOINT_URL"):
        stand_in = project.running_stand_in()
    if stand_in is None:
        yield
        return
    from ops.local import environment, local_aws_environment

    if not (getattr(args, "bucket", None) or os.environ.get("MODEL_BUCKET")):
        args.bucket = stand_in.bucket
    print(f"maas: talking to {stand_in.describe()}", file=sys.stderr)
    with environment(local_aws_environment(stand_in.endpoint)):
        yield


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except MaasError as error:  # the operator may see what AWS said (bucket, ARN); a client never does
        if getattr(args, "verbose", False) and error.__cause__ is not None:
            traceback.print_exception(error.__cause__, file=sys.stderr)
        detail = error_detail(error, causes=False)
        detail = f" ({' '.join(detail.split())})" if detail else ""  # one line, whatever AWS sent
        print(f"error: {error.message}{detail}", file=sys.stderr)
        return 1
    except Exception as error:
        message = _aws_problem(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
