"""template.yaml: SAM and cfn-lint clean, least-privilege policies, and a real `sam build` (no Docker)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops import catalogue
from ops.template import Intrinsic, functions, load_template
from tests.integration.tools import PICKED_DEPLOYMENT, run
from training.data import PROJECT_ROOT

MODELS = catalogue.load()
FUNCTIONS_DIR = PROJECT_ROOT / "functions"

LAYER_LIMIT_BYTES = 150 * 1024 * 1024
TRAINING_ONLY = ("sklearn", "scikit_learn", "tensorflow", "keras", "tf2onnx", "skl2onnx", "torch")


def test_sam_validate_lint_is_clean() -> None:
    result = run("sam", "validate", "--lint", "--template", "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    result = run("sam", "build", "--template", "template.yaml", "--build-dir", str(build_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    yield build_dir


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_sam_build_makes_the_layer_and_function_for_python312(built: Path) -> None:
    layer = built / "RuntimeLayer" / "python"
    assert (layer / "maas" / "entry" / "model.py").is_file()
    assert (layer / "onnxruntime").is_dir() and (layer / "numpy").is_dir()
    assert (layer / "aws_lambda_powertools").is_dir()
    assert list(layer.glob("onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-*.so"))
    # precompiled for 3.12, so a read-only /opt does not mean compiling at every cold start
    assert list(layer.glob("maas/entry/__pycache__/model.cpython-312.pyc"))
    assert list(layer.glob("aws_lambda_powertools/__pycache__/__init__.cpython-312.pyc"))
    # every function is built from the one shared folder, functions/ (the handler is in the layer)
    shared = {p.name: p.read_bytes() for p in FUNCTIONS_DIR.iterdir() if p.is_file()}
    for spec in functions():
        out = built / spec.logical_id
        assert out.is_dir(), spec.logical_id
        assert {name: (out / name).read_bytes() for name in shared} == shared, spec.logical_id
        assert not [p for p in out.iterdir() if p.name.lower().startswith(TRAINING_ONLY)], spec.logical_id


def test_the_built_layer_is_free_of_training_frameworks_and_under_150_mb(built: Path) -> None:
    layer = built / "RuntimeLayer"
    names = {p.name.lower() for p in (layer / "python").iterdir()}
    assert not [n for n in names if n.startswith(TRAINING_ONLY)]
    size = tree_size(layer)
    print(f"built layer, unzipped: {size / 1e6:.1f} MB")
    assert size < LAYER_LIMIT_BYTES


def test_nothing_served_imports_a_training_framework() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(" + "|".join(TRAINING_ONLY) + r")\b", re.M)
    served = [*(PROJECT_ROOT / "layers").rglob("*.py"), *(PROJECT_ROOT / "functions").rglob("*.py")]
    assert served
    assert [str(p) for p in served if pattern.search(p.read_text())] == []


def protocol_routes(model: str) -> set[tuple[str, str]]:
    """The Open Inference Protocol's six model routes (maas/inference_protocol.py)."""
    base, version = f"/v2/models/{model}", f"/v2/models/{model}/versions/{{version}}"
    return {("GET", base), ("GET", f"{base}/ready"), ("POST", f"{base}/infer")} | {
        ("GET", version),
        ("GET", f"{version}/ready"),
        ("POST", f"{version}/infer"),
    }


def openai_routes(prefix: str) -> set[tuple[str, str]]:
    """OpenAI's routes under ``prefix``: one greedy route (ops/template_gen.py)."""
    return {("ANY", f"{prefix}/{{proxy+}}")}


def test_each_catalogue_model_has_its_function_with_both_verbs_and_the_catalogue_settings() -> None:
    specs = {spec.model_name: spec for spec in functions() if spec.model_name}
    assert set(specs) == set(MODELS.names)
    everything = resources()
    for model in MODELS:
        spec = specs[model.name]
        # every plain verb: the served version's task decides which one answers
        assert {(r.method, r.path) for r in spec.routes} == {
            ("POST", f"/models/{model.name}/predict"),
            ("POST", f"/models/{model.name}/generate"),
            ("POST", f"/models/{model.name}/embed"),
            ("GET", f"/models/{model.name}"),
        } | protocol_routes(model.name) | openai_routes(f"/models/{model.name}/v1")
        assert spec.logical_id == f"{model.logical_id}Function"
        assert (spec.code_dir, spec.module, spec.handler) == (
            FUNCTIONS_DIR,
            "maas.entry.model",
            "lambda_handler",
        )
        assert (spec.memory_mb, spec.timeout_s) == (model.memory_mb, model.timeout_s)
        assert spec.environment["BATCH_CHUNK_ROWS"] == str(model.batch_chunk_rows)
        props = everything[spec.logical_id]["Properties"]
        assert props["EphemeralStorage"] == {"Size": model.ephemeral_storage_mb}
        assert props.get("ReservedConcurrentExecutions") == model.reserved_concurrency


def test_the_multi_model_function_serves_any_model_over_http_only() -> None:
    (spec,) = [s for s in functions() if s.logical_id == "MultiModelFunction"]
    model, version = "/models/{model}", "/v2/models/{model}"
    assert {(r.method, r.path) for r in spec.routes} == {
        ("GET", model),
        ("POST", f"{model}/predict"),
        ("POST", f"{model}/generate"),
        ("POST", f"{model}/embed"),
    } | {
        ("GET", version),
        ("GET", f"{version}/ready"),
        ("POST", f"{version}/infer"),
        ("GET", f"{version}/versions/{{version}}"),
        ("GET", f"{version}/versions/{{version}}/ready"),
        ("POST", f"{version}/versions/{{version}}/infer"),
    } | openai_routes("/v1") | openai_routes(f"{model}/v1")
    assert (spec.code_dir, spec.module) == (FUNCTIONS_DIR, "maas.entry.multi_model")
    assert spec.model_name is None and "MODEL_VERSION" not in spec.environment
    assert spec.environment["POWERTOOLS_SERVICE_NAME"] == "multi_model"
    props = resources()["MultiModelFunction"]["Properties"]
    assert {e["Type"] for e in props["Events"].values()} == {"HttpApi"}
    assert (spec.memory_mb, spec.timeout_s, props["EphemeralStorage"]["Size"]) == (2048, 30, 2048)
    # the cache (files in /tmp, sessions in memory) fits both, with room for the runtime
    cache_mb = int(spec.environment["MODEL_CACHE_BYTES"]) / 2**20
    assert cache_mb <= props["EphemeralStorage"]["Size"] - 512 and cache_mb <= spec.memory_mb - 512


def test_streaming_functions_have_an_iam_function_url_in_stream_mode_and_our_runtime_loop() -> None:
    """The multi-model function (and a `stream = true` catalogue model) streams through a function
    URL that takes SigV4-signed requests only, answered by the layer's Runtime API loop."""
    everything = resources()
    multi = everything["MultiModelFunction"]["Properties"]
    assert multi["FunctionUrlConfig"] == {"AuthType": "AWS_IAM", "InvokeMode": "RESPONSE_STREAM"}
    assert multi["Environment"]["Variables"]["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/maas-stream"
    assert load_template()["Outputs"]["MultiModelStreamUrl"]["Value"] == Intrinsic(
        "GetAtt", "MultiModelFunctionUrl.FunctionUrl"
    )
    for model in MODELS:  # only `stream = true` models have a URL and our loop (wine_lr's test)
        props = everything[model.function]["Properties"]
        assert ("FunctionUrlConfig" in props) == model.stream
        assert ("AWS_LAMBDA_EXEC_WRAPPER" in props["Environment"]["Variables"]) == model.stream
    wrapper = (PROJECT_ROOT / "layers" / "runtime" / "maas-stream").read_text()
    assert "-m maas.entry.runtime_api" in wrapper


def test_the_registry_function_runs_the_layer_handler_from_the_shared_folder() -> None:
    (spec,) = [s for s in functions() if s.logical_id == "RegistryFunction"]
    assert (spec.code_dir, spec.module, spec.handler) == (
        FUNCTIONS_DIR,
        "maas.entry.registry",
        "lambda_handler",
    )


def test_layer_requirements_pin_what_pyproject_pins() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    runtime = {d for d in pyproject["project"]["dependencies"] if not d.startswith("boto3")}
    lines = (PROJECT_ROOT / "layers" / "runtime" / "requirements.txt").read_text().splitlines()
    layer = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert layer == runtime
    assert all("==" in requirement for requirement in layer)


def resources() -> dict[str, Any]:
    return dict(load_template()["Resources"])


def test_models_bucket_is_versioned_encrypted_private_and_tls_only() -> None:
    bucket = resources()["ModelsBucket"]["Properties"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    statements = resources()["ModelsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false" for s in statements
    )


def test_the_http_api_uses_iam_authorisation_by_default() -> None:
    auth = resources()["HttpApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "AWS_IAM"


def model_functions() -> list[Any]:
    """The functions that serve a model (the registry function serves the server-wide routes)."""
    return [spec for spec in functions() if spec.model_name]


def _statements(spec: Any) -> list[dict[str, Any]]:
    """The function's own role's statements (each function has one; SAM's would add ``sqs:*`` on ``*``)."""
    role = resources()[spec.logical_id]["Properties"]["Role"]
    assert isinstance(role, Intrinsic) and role.tag == "GetAtt"
    role_id = role.value.split(".")[0]
    properties = resources()[role_id]["Properties"]
    assert "AWSLambdaBasicExecutionRole" not in str(properties["ManagedPolicyArns"]), "logs:* on *"
    return [s for policy in properties["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def test_each_function_consumes_only_its_own_queue_and_fails_only_into_its_own_dead_letter_queue() -> None:
    everything = resources()
    for spec in model_functions():
        events = everything[spec.logical_id]["Properties"]["Events"].values()
        (queue,) = [e["Properties"]["Queue"].value for e in events if e["Type"] == "SQS"]
        on_queues = [s for s in _statements(spec) if any(a.startswith("sqs:") for a in _actions(s))]
        assert {r for s in on_queues for r in _resources_of(s)} == {
            queue,
            f"{everything[queue.split('.')[0]]['Properties']['RedrivePolicy']['deadLetterTargetArn'].value}",
        }
        assert all("*" not in a for s in on_queues for a in _actions(s))
        failure = everything[spec.logical_id]["Properties"]["EventInvokeConfig"]["DestinationConfig"][
            "OnFailure"
        ]
        assert failure["Type"] == "SQS" and failure["Destination"].value.split(".")[0] in str(on_queues)


def _actions(statement: dict[str, Any]) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def _resources_of(statement: dict[str, Any]) -> list[str]:
    found = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    assert all(isinstance(r, Intrinsic) for r in found)
    return [str(r.value) for r in found]


def test_each_function_reads_only_its_own_model_prefix() -> None:
    """A model function reads its own model; the registry and multi-model functions read all models."""
    for spec in functions():
        prefix = f"models/{spec.model_name}/*" if spec.model_name else "models/*"
        for statement in _statements(spec):
            actions = _actions(statement)
            if actions == ["kms:Verify"]:  # manifest signatures: the signing key only
                assert _resources_of(statement) == ["ManifestSigningKey.Arn"]
                continue
            assert all(a.startswith(("s3:", "sqs:")) and "*" not in a for a in actions), actions
            if not spec.model_name:  # no data bucket, no queue: the registry only
                assert all("ModelsBucket" in r for r in _resources_of(statement)), statement
            on_models = [r for r in _resources_of(statement) if "ModelsBucket" in r]
            if not on_models:
                continue
            assert not any(a.startswith(("s3:Put", "s3:Delete")) for a in actions), actions
            if not spec.model_name:
                # the repository index reads manifests and publication records; multi_model loads
                assert set(actions) <= {
                    "s3:ListBucket",
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:GetObjectTagging",
                }
            if actions == ["s3:ListBucket"]:
                assert statement["Condition"]["StringLike"]["s3:prefix"] == [prefix]
            else:
                assert on_models == [f"${{ModelsBucket.Arn}}/{prefix}"]


def test_each_function_reads_its_inputs_and_writes_its_outputs_and_results_only() -> None:
    data = "arn:${AWS::Partition}:s3:::${DataBucketName}"
    for spec in model_functions():
        model = spec.model_name
        on_data = [s for s in _statements(spec) if any("DataBucketName" in r for r in _resources_of(s))]
        reads = [s for s in on_data if all(a.startswith(("s3:Get", "s3:List")) for a in _actions(s))]
        writes = [s for s in on_data if s not in reads]
        # its inputs; and a batch job's final step reads back its batches' counts (and lists them)
        assert [r for s in reads for r in _resources_of(s)] == [
            f"{data}/inputs/{model}/*",
            f"{data}/outputs/{model}/large/*",
            data,
        ]
        (listing,) = [s for s in reads if _actions(s) == ["s3:ListBucket"]]
        assert listing["Condition"]["StringLike"]["s3:prefix"] == [f"outputs/{model}/large/*"]
        assert sorted(r for s in writes for r in _resources_of(s)) == [
            f"{data}/outputs/{model}/*",
            f"{data}/results/{model}/*",
        ]
        assert {a for s in writes for a in _actions(s)} <= {"s3:PutObject", "s3:AbortMultipartUpload"}


def test_data_bucket_is_encrypted_private_tls_only_and_expires_old_outputs() -> None:
    bucket = resources()["DataBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireOutputs"]["Prefix"] == "outputs/" and rules["ExpireResults"]["Prefix"] == "results/"
    assert rules["AbortIncompleteUploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    statements = resources()["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false" for s in statements
    )


def test_each_function_has_its_s3_prefix_queue_dead_letter_queue_and_alarm() -> None:
    everything = resources()
    for spec in model_functions():
        props = everything[spec.logical_id]["Properties"]
        events = props["Events"].values()
        (s3,) = [e["Properties"] for e in events if e["Type"] == "S3"]
        assert s3["Bucket"].value == "DataBucket"
        assert s3["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": f"inputs/{spec.model_name}/"}]
        (sqs,) = [e["Properties"] for e in events if e["Type"] == "SQS"]
        assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        queue_id = sqs["Queue"].value.split(".")[0]
        queue = everything[queue_id]["Properties"]
        assert queue["VisibilityTimeout"] >= 6 * props["Timeout"]
        assert queue["RedrivePolicy"]["maxReceiveCount"] == 3
        dlq_id = queue["RedrivePolicy"]["deadLetterTargetArn"].value.split(".")[0]
        assert everything[dlq_id]["Type"] == "AWS::SQS::Queue"
        alarms = [
            r["Properties"]
            for r in everything.values()
            if r["Type"] == "AWS::CloudWatch::Alarm"
            and r["Properties"].get("Namespace") == "AWS/SQS"
            and r["Properties"]["Dimensions"][0]["Value"].value == f"{dlq_id}.QueueName"
        ]
        assert len(alarms) == 1
        alarm = alarms[0]
        assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 0


def test_functions_use_python312_the_layer_and_powertools_settings() -> None:
    template = load_template()
    defaults = template["Globals"]["Function"]
    assert defaults["Runtime"] == "python3.12"
    variables = defaults["Environment"]["Variables"]
    assert {"POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_TRACE_DISABLED"} <= set(
        variables
    )
    layer = template["Resources"]["RuntimeLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    for spec in functions():
        service = spec.model_name or catalogue.snake_case(spec.logical_id.removesuffix("Function"))
        assert spec.environment["POWERTOOLS_SERVICE_NAME"] == service
        log_groups = [
            r
            for r in template["Resources"].values()
            if r["Type"] == "AWS::Logs::LogGroup"
            and r["Properties"].get("LogGroupName") == Intrinsic("Sub", f"/aws/lambda/${{{spec.logical_id}}}")
        ]
        assert len(log_groups) == 1 and log_groups[0]["Properties"]["RetentionInDays"]


# --- lifecycle and access control -----------------------------------------------------------------

HEALTH = "/health/"


def test_cfn_lint_is_clean_in_both_auth_modes() -> None:
    for parameters in (
        ["AuthMode=IAM"],
        ["AuthMode=JWT", "JwtIssuer=https://issuer.example.com/", "JwtAudience=maas-clients"],
    ):
        result = run("cfn-lint", "template.yaml", "--parameters", *parameters)
        assert result.returncode == 0, (parameters, result.stdout + result.stderr)
        assert result.stdout.strip() == "", parameters


def test_every_function_publishes_an_alias_with_a_canary_deployment_and_rollback_alarms(
    translated: dict[str, Any],
) -> None:
    template = load_template()
    assert template["Parameters"]["DeploymentType"]["Default"] == "Canary10Percent5Minutes"
    globals_ = template["Globals"]["Function"]
    assert globals_["AutoPublishAlias"] == "live"
    assert globals_["DeploymentPreference"]["Type"] == Intrinsic("Ref", "DeploymentType")
    out = translated["Resources"]
    assert functions()
    for spec in functions():
        props = resources()[spec.logical_id]["Properties"]
        alarms = [a.value for a in props["DeploymentPreference"]["Alarms"]]
        metrics = {resources()[a]["Properties"]["MetricName"] for a in alarms}
        # model functions: latency of HTTP requests (RequestLatency), so batch files scored during
        # a shift cannot roll it back; the registry function only answers HTTP, its Duration is that
        assert metrics == {"Errors", "RequestLatency" if spec.model_name else "Duration"}, spec.logical_id
        for alarm in alarms:
            properties = resources()[alarm]["Properties"]
            dimensions = {d["Name"]: d["Value"] for d in properties["Dimensions"]}
            if properties["Namespace"] == "AWS/Lambda":
                assert dimensions["Resource"] == Intrinsic("Sub", f"${{{spec.logical_id}}}:live")
            else:
                assert dimensions == {"model": spec.model_name, "service": spec.model_name}
        assert out[f"{spec.logical_id}Aliaslive"]["Type"] == "AWS::Lambda::Alias"
        group = out[f"{spec.logical_id}DeploymentGroup"]["Properties"]
        assert group["DeploymentConfigName"]["Fn::Sub"][1]["ConfigName"] == PICKED_DEPLOYMENT
        assert sorted(a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]) == sorted(alarms)
        assert group["AutoRollbackConfiguration"]["Enabled"] is True
        if spec.model_name:
            assert "MODEL_VERSION" in props["Environment"]["Variables"], "a pin must be deployable"


def api_operations(translated: dict[str, Any], api: str) -> dict[tuple[str, str], dict[str, Any]]:
    paths = translated["Resources"][api]["Properties"]["Body"]["paths"]
    any_method = {"X-AMAZON-APIGATEWAY-ANY-METHOD": "ANY"}
    return {
        (any_method.get(method.upper(), method.upper()), path): op
        for path, methods in paths.items()
        for method, op in methods.items()
    }


def test_both_api_variants_have_the_same_routes_all_authorised_except_health(
    translated: dict[str, Any],
) -> None:
    iam = api_operations(translated, "HttpApi")
    jwt = api_operations(translated, "JwtHttpApi")
    assert iam.keys() == jwt.keys() and iam
    declared = {(r.method, r.path) for spec in functions() for r in spec.routes}
    assert declared == set(iam)
    for (method, path), operation in iam.items():
        if HEALTH in path:
            continue
        assert operation["security"] == [{"AWS_IAM": []}], (method, path)
        assert jwt[(method, path)]["security"] == [{"JwtAuthorizer": []}], (method, path)
        uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        assert uri.endswith("Aliaslive}/invocations"), "routes must invoke the alias, not $LATEST"
    scheme = translated["Resources"]["JwtHttpApi"]["Properties"]["Body"]["components"]["securitySchemes"]
    jwt_config = scheme["JwtAuthorizer"]["x-amazon-apigateway-authorizer"]["jwtConfiguration"]
    assert jwt_config["issuer"]["Fn::If"][:2] == ["JwtAuth", {"Ref": "JwtIssuer"}]
    assert jwt_config["audience"][0]["Fn::If"][:2] == ["JwtAuth", {"Ref": "JwtAudience"}]


def test_auth_mode_leaves_exactly_one_api_reachable(translated: dict[str, Any]) -> None:
    conditions = {"IAM": {"IamAuth": True, "JwtAuth": False}, "JWT": {"IamAuth": False, "JwtAuth": True}}
    assert load_template()["Parameters"]["AuthMode"]["Default"] == "IAM"
    for mode, truth in conditions.items():
        reachable = []
        for api in ("HttpApi", "JwtHttpApi"):
            servers = translated["Resources"][api]["Properties"]["Body"]["servers"]
            condition, if_true, if_false = servers[0]["x-amazon-apigateway-endpoint-configuration"][
                "disableExecuteApiEndpoint"
            ]["Fn::If"]
            disabled = if_true if truth[condition] else if_false
            if not disabled:
                reachable.append(api)
        assert reachable == (["HttpApi"] if mode == "IAM" else ["JwtHttpApi"]), mode


def allow_statements() -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in resources().items():
        props = resource.get("Properties", {})
        # SAM function policies are documents; an IAM role's are {PolicyName, PolicyDocument}
        documents = [p.get("PolicyDocument", p) for p in props.get("Policies", []) if isinstance(p, dict)]
        if resource["Type"] == "AWS::IAM::ManagedPolicy":
            documents.append(props["PolicyDocument"])
        for document in documents:
            for statement in document["Statement"]:
                if statement["Effect"] == "Allow":
                    yield logical_id, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_policy_grants_s3_star_or_every_resource() -> None:
    seen = 0
    for owner, statement in allow_statements():
        seen += 1
        actions = as_list(statement["Action"])
        assert "s3:*" not in actions and "*" not in actions, owner
        assert all(r != "*" for r in as_list(statement["Resource"])), owner
    assert seen >= 4


def permissions_owner(function_id: str) -> str:
    """The resource holding a function's policies: its own IAM role when it names one."""
    role = resources()[function_id]["Properties"].get("Role")
    return str(role.value).split(".")[0] if isinstance(role, Intrinsic) else function_id


def on_models_bucket(statement: dict[str, Any]) -> bool:
    return "ModelsBucket" in str([getattr(r, "value", r) for r in as_list(statement["Resource"])])


def test_functions_never_hold_registry_write_and_the_publisher_policies_do() -> None:
    reads = {"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:ListBucket"}
    function_ids = {spec.logical_id for spec in functions()}
    granted: dict[str, set[str]] = {}
    for owner, statement in allow_statements():
        if on_models_bucket(statement):
            granted.setdefault(owner, set()).update(as_list(statement["Action"]))
    for spec in functions():
        owner = permissions_owner(spec.logical_id)
        assert granted[owner] <= reads, spec.logical_id
        if spec.model_name:
            assert granted[owner] == reads, spec.logical_id
    assert function_ids
    assert {"s3:PutObject", "s3:PutObjectTagging"} <= granted["RegistryPublishPolicy"]
    for writer in ("RegistryPublishPolicy", "RegistryPromotePolicy", "RegistryRetirePolicy"):
        assert not granted[writer] & {"s3:DeleteObject", "s3:DeleteObjectVersion"}, writer
    assert granted["RegistryAdminPolicy"] == {"s3:DeleteObject", "s3:DeleteObjectVersion"}


def test_registry_writes_must_be_conditional_and_the_bucket_is_access_logged() -> None:
    statements = {
        s.get("Sid"): s
        for s in resources()["ModelsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    }
    versions = statements["VersionsAreWriteOnce"]
    assert (versions["Effect"], versions["Action"]) == ("Deny", "s3:PutObject")
    assert versions["Resource"].value == "${ModelsBucket.Arn}/models/*/versions/*"
    assert versions["Condition"] == {"Null": {"s3:if-none-match": "true"}}
    aliases = statements["AliasMovesAreConditional"]
    assert aliases["Condition"] == {"Null": {"s3:if-none-match": "true", "s3:if-match": "true"}}
    logging = resources()["ModelsBucket"]["Properties"]["LoggingConfiguration"]
    assert logging["DestinationBucketName"] == Intrinsic("Ref", "AccessLogsBucket")
    logs = resources()["AccessLogsBucket"]["Properties"]
    assert logs["BucketEncryption"] and all(logs["PublicAccessBlockConfiguration"].values())


def test_the_arm64_layer_carries_aarch64_binaries_and_stays_under_150_mb(built: Path) -> None:
    layer = built / "RuntimeLayerArm64"
    assert list(layer.glob("python/onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-aarch64-*.so"))
    assert list(layer.glob("python/numpy/_core/_multiarray_umath.cpython-312-aarch64-*.so"))
    assert not list(layer.rglob("*x86_64*.so"))
    assert list(layer.glob("python/maas/entry/__pycache__/model.cpython-312.pyc"))
    assert tree_size(layer) < LAYER_LIMIT_BYTES


def test_architecture_snapstart_and_provisioned_concurrency_are_parameters() -> None:
    template = load_template()
    parameters, defaults = template["Parameters"], template["Globals"]["Function"]
    assert parameters["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]
    assert defaults["Architectures"] == [Intrinsic("Ref", "Architecture")]
    assert defaults["Layers"] == [
        Intrinsic("If", ["OnArm64", Intrinsic("Ref", "RuntimeLayerArm64"), Intrinsic("Ref", "RuntimeLayer")])
    ]
    # SnapStart snapshots published versions; provisioned concurrency lives on the alias
    assert defaults["AutoPublishAlias"] == "live"
    assert parameters["SnapStart"]["AllowedValues"] == ["PublishedVersions", "None"]
    assert defaults["SnapStart"] == {"ApplyOn": Intrinsic("Ref", "SnapStart")}
    provisioned = defaults["ProvisionedConcurrencyConfig"]
    assert provisioned.tag == "If" and provisioned.value[0] == "HasProvisionedConcurrency"
    assert provisioned.value[1] == {
        "ProvisionedConcurrentExecutions": Intrinsic("Ref", "ProvisionedConcurrency")
    }
    # Lambda refuses SnapStart with provisioned concurrency: the template says so before deploying
    rule = template["Rules"]["SnapStartExcludesProvisionedConcurrency"]
    assert rule["Assertions"][0]["Assert"] == Intrinsic(
        "Equals", [Intrinsic("Ref", "ProvisionedConcurrency"), "0"]
    )


def _role_of(spec: Any) -> str:
    return str(resources()[spec.logical_id]["Properties"]["Role"].value).split(".")[0]


def test_the_manifest_signing_key_signs_for_publishers_and_only_verifies_for_functions() -> None:
    everything = resources()
    key = everything["ManifestSigningKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["KeySpec"] == "ECC_NIST_P256" and key["Properties"]["KeyUsage"] == "SIGN_VERIFY"
    admin, signing_if = key["Properties"]["KeyPolicy"]["Statement"]
    assert "${AWS::AccountId}:root" in str(admin["Principal"]["AWS"].value)
    # the account administers without signing or granting; who signs is the key policy's own
    # statement (its decisions are simulated in test_registry_iam.py)
    assert not {"kms:*", "kms:Sign", "kms:CreateGrant", "kms:Create*"} & set(admin["Action"])
    assert "kms:Verify" in admin["Action"]  # IAM policies decide who verifies (every function)
    condition, signing_statement, _ = signing_if.value
    assert condition == "HasPublishers" and signing_statement["Action"] == "kms:Sign"
    policy_roles = everything["RegistryPublishPolicy"]["Properties"]["Roles"].value
    assert policy_roles[:2] == ["HasPublishers", Intrinsic("Ref", "PublisherRoleNames")]
    env = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert (
        env["MANIFEST_SIGNING_KEY"].tag == "Ref" and env["MANIFEST_SIGNING_KEY"].value == "ManifestSigningKey"
    )
    for spec in functions():
        on_kms = [s for s in _statements(spec) if any(a.startswith("kms:") for a in _actions(s))]
        assert [_actions(s) for s in on_kms] == [["kms:Verify"]], spec.logical_id
        assert _resources_of(on_kms[0]) == ["ManifestSigningKey.Arn"]
    publisher = everything["RegistryPublishPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (signing,) = [s for s in publisher if any(a.startswith("kms:") for a in _actions(s))]
    assert "kms:Sign" in _actions(signing) and _resources_of(signing) == ["ManifestSigningKey.Arn"]


def test_each_function_writes_logs_to_its_own_log_group_only() -> None:
    everything = resources()
    for spec in functions():
        role = _role_of(spec)
        policies = [
            p["Properties"]
            for p in everything.values()
            if p["Type"] == "AWS::IAM::Policy" and any(r.value == role for r in p["Properties"]["Roles"])
        ]
        (policy,) = policies
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert sorted(_actions(statement)) == ["logs:CreateLogStream", "logs:PutLogEvents"]
        (group,) = _resources_of(statement)
        assert group.endswith("LogGroup.Arn")
        name = everything[group.split(".")[0]]["Properties"]["LogGroupName"].value
        assert name == f"/aws/lambda/${{{spec.logical_id}}}", (spec.logical_id, name)
        assert not any(a.startswith("logs:") for s in _statements(spec) for a in _actions(s))


def test_the_registry_bucket_has_object_lock_by_default_and_publishers_may_lock() -> None:
    document = load_template()
    assert document["Parameters"]["RegistryObjectLockDays"]["Default"] == 30
    bucket = document["Resources"]["ModelsBucket"]["Properties"]
    assert bucket["ObjectLockEnabled"].tag == "If" and bucket["ObjectLockEnabled"].value[0] == "HasObjectLock"
    assert "ObjectLockConfiguration" not in bucket, "no default retention: alias objects stay deletable"
    assert {t["Key"]: t["Value"].value for t in bucket["Tags"]} == {
        "maas:object-lock-days": "RegistryObjectLockDays"
    }
    publisher = document["Resources"]["RegistryPublishPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    granted = {a for s in publisher for a in _actions(s)}
    assert {"s3:PutObjectRetention", "s3:GetBucketObjectLockConfiguration", "s3:GetBucketTagging"} <= granted
    assert not granted & {"s3:BypassGovernanceRetention", "s3:PutBucketObjectLockConfiguration"}
