"""The SSM calls an instance makes about itself that moto lacks or words differently, and the
resources the Session Manager preferences name.

* ``ListInstanceAssociations`` (the agent's own call; not in botocore's public model, the agent's
  SDK has it): a registered instance gets ``{"Associations": []}`` (the lab has no associations);
  an unknown one ``InvalidInstanceId`` (the inventory's wording); a malformed id the front end's
  ``ValidationException``.
* ``GetDocument SSM-SessionManagerRunShell``: the account's Session Manager preferences, from the
  scenario's ``session_preferences`` (document inputs). Without preferences the document does not
  exist: ``400 InvalidDocument`` ``Document with name SSM-SessionManagerRunShell does not exist.``
  (the service's wording for a missing document, e.g. awslabs/awsome-distributed-training#496; moto
  says ``The specified document does not exist.``). Other document names go to moto.
* ``seed_resources``: the log group, KMS key (and alias) and bucket the preferences name, created in
  moto unless ``session_resources`` says they are missing (or the log group / bucket unencrypted).
"""
from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from .model_validation import ShapeMismatch, validate, validation_message
from .protocol import Reply, Request, json_error, json_reply
from .world import World

if TYPE_CHECKING:  # scenario.py imports this module for INPUT_TYPES: keep it light
    from .inventory import InventoryService

DOCUMENT = "SSM-SessionManagerRunShell"
DESCRIPTION = "Document to hold regional settings for Session Manager"
# The inputs of a Standard_Stream Session document and their JSON types (Session document schema,
# docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-schema.html).
INPUT_TYPES: Dict[str, type] = {
    "s3BucketName": str, "s3KeyPrefix": str, "s3EncryptionEnabled": bool,
    "cloudWatchLogGroupName": str, "cloudWatchEncryptionEnabled": bool, "cloudWatchStreamingEnabled": bool,
    "kmsKeyId": str, "runAsEnabled": bool, "runAsDefaultUser": str,
    "idleSessionTimeout": str, "maxSessionDuration": str, "shellProfile": dict,
}
SHELL_PROFILE_KEYS = ("windows", "linux")
# The console's defaults for the inputs a scenario leaves out.
DEFAULT_INPUTS: Dict[str, Any] = {
    "s3BucketName": "", "s3KeyPrefix": "", "s3EncryptionEnabled": True, "cloudWatchLogGroupName": "",
    "cloudWatchEncryptionEnabled": True, "cloudWatchStreamingEnabled": True, "idleSessionTimeout": "20",
    "maxSessionDuration": "", "kmsKeyId": "", "runAsEnabled": False, "runAsDefaultUser": "",
    "shellProfile": {"windows": "", "linux": ""},
}
INSTANCE_ID = re.compile(r"(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)")
LAB_LOGS_KEY_ALIAS = "alias/vpce-lab-session-logs"


def input_problems(inputs: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """(input name, problem) for every input that is unknown or of the wrong type."""
    problems: List[Tuple[str, str]] = []
    for name, value in inputs.items():
        wanted = INPUT_TYPES.get(name)
        if wanted is None:
            problems.append((str(name), f"not a Session Manager preference (one of {', '.join(INPUT_TYPES)})"))
        elif wanted is dict:
            if not isinstance(value, dict) or any(k not in SHELL_PROFILE_KEYS or not isinstance(v, str)
                                                   for k, v in value.items()):
                problems.append((name, "expected {windows: str, linux: str}"))
        elif not isinstance(value, wanted):
            problems.append((name, f"expected a {'boolean' if wanted is bool else 'string'}, got {value!r:.40}"))
    return problems


def document_content(inputs: Mapping[str, Any]) -> str:
    """The document as the console writes it: the scenario's inputs over the console's defaults."""
    merged = dict(DEFAULT_INPUTS)
    merged.update(inputs)
    return json.dumps({"schemaVersion": "1.0", "description": DESCRIPTION, "sessionType": "Standard_Stream",
                       "inputs": merged}, indent=4)


class SsmInstanceApi:
    """The interceptor for ListInstanceAssociations and GetDocument of the preferences."""

    def __init__(self, world: World, inventory: "InventoryService") -> None:
        self._world = world
        self._inventory = inventory
        self._created = time.time()
        prefs = world.session_preferences
        self._content = document_content(prefs) if prefs is not None else None
        self._model: Any = None

    def intercept(self, request: Request) -> Optional[Reply]:
        prefix, _, operation = (request.header("X-Amz-Target") or "").partition(".")
        if prefix != "AmazonSSM" or request.method != "POST" or operation not in ("ListInstanceAssociations",
                                                                                   "GetDocument"):
            return None
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            return json_error("SerializationException", "The request body is not valid JSON.")
        if not isinstance(payload, dict):
            return json_error("SerializationException", "Start of structure or map found where not expected.")
        if operation == "ListInstanceAssociations":
            return self._list_instance_associations(payload)
        return self._get_document(payload)

    def _list_instance_associations(self, payload: Dict[str, Any]) -> Reply:
        instance_id = payload.get("InstanceId")
        if instance_id is None:
            return json_error("ValidationException", validation_message(
                ["Value null at 'instanceId' failed to satisfy constraint: Member must not be null"]))
        if not isinstance(instance_id, str):
            return json_error("SerializationException", "instanceId: expected a string")
        if not INSTANCE_ID.match(instance_id):
            return json_error("ValidationException", validation_message(
                [f"Value '{instance_id[:120]}' at 'instanceId' failed to satisfy constraint: Member must satisfy "
                 f"regular expression pattern: {INSTANCE_ID.pattern}"]))
        if not self._inventory.is_registered(instance_id):
            return json_error("InvalidInstanceId", self._inventory.not_managed_message(instance_id))
        return json_reply({"Associations": []})

    def _get_document(self, payload: Dict[str, Any]) -> Optional[Reply]:
        name = payload.get("Name")
        if not isinstance(name, str) or name.rsplit("/", 1)[-1] != DOCUMENT:
            return None  # another document: moto's
        try:
            errors = validate(self._ssm_model().operation_model("GetDocument").input_shape, payload)
        except ShapeMismatch as exc:
            return json_error("SerializationException", str(exc))
        if errors:
            return json_error("ValidationException", validation_message(errors))
        if self._content is None:
            return json_error("InvalidDocument", f"Document with name {name} does not exist.")
        if payload.get("DocumentVersion") not in (None, "1", "$LATEST", "$DEFAULT"):
            return json_error("InvalidDocumentVersion", "The document version is not valid or does not exist.")
        fmt = payload.get("DocumentFormat") or "JSON"
        content = self._content
        if fmt == "YAML":
            import yaml

            content = yaml.safe_dump(json.loads(content), sort_keys=False)
        return json_reply({"Name": DOCUMENT, "CreatedDate": self._created, "DocumentVersion": "1",
                           "Status": "Active", "Content": content, "DocumentType": "Session",
                           "DocumentFormat": fmt})

    def _ssm_model(self) -> Any:
        if self._model is None:
            import botocore.session

            self._model = botocore.session.get_session().get_service_model("ssm")
        return self._model


# --- the resources the preferences name, in moto ----------------------------------------------------

def seed_resources(world: World, session: Any, moto_url: str) -> Dict[str, str]:
    """Create what the preferences name; returns {"log_group"|"kms_key"|"bucket": name/ARN created}."""
    prefs = world.session_preferences or {}
    have = world.session_resources
    created: Dict[str, str] = {}

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=moto_url, region_name=world.region)

    key_ref = prefs.get("kmsKeyId") or ""
    if key_ref and have.kms_key == "present":
        created["kms_key"] = _kms_key(client("kms"), world, key_ref)
    group = prefs.get("cloudWatchLogGroupName") or ""
    if group and have.log_group != "missing":
        args: Dict[str, Any] = {"logGroupName": group}
        if prefs.get("cloudWatchEncryptionEnabled", True) and have.log_group == "present":
            args["kmsKeyId"] = created.get("kms_key") or _kms_key(client("kms"), world, LAB_LOGS_KEY_ALIAS)
        client("logs").create_log_group(**args)
        created["log_group"] = group
    bucket = prefs.get("s3BucketName") or ""
    if bucket and have.bucket != "missing":
        from botocore.config import Config

        s3 = session.client("s3", endpoint_url=moto_url, region_name=world.region,
                            config=Config(s3={"addressing_style": "path"}))
        create: Dict[str, Any] = {"Bucket": bucket}
        if world.region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": world.region}
        s3.create_bucket(**create)
        if have.bucket == "present":  # default encryption (SSE-S3), as every bucket has since 2023
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        created["bucket"] = bucket
    return created


def _kms_key(kms: Any, world: World, ref: str) -> str:
    """A symmetric key that ``ref`` (key id, key ARN, alias name or alias ARN) names; returns its ARN."""
    key = kms.create_key(Description="vpce-doctor lab: Session Manager encryption")["KeyMetadata"]
    alias = ref.split(":", 5)[-1] if ref.startswith("arn:") else ref
    if alias.startswith("alias/"):
        kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
        return str(key["Arn"])
    wanted = alias[len("key/"):] if alias.startswith("key/") else alias
    return _rekey(world, key["KeyId"], wanted)


def _rekey(world: World, old_id: str, new_id: str) -> str:
    """moto picks key ids itself: give the key the id the preferences name."""
    from moto.kms.models import kms_backends

    from .seed import ACCOUNT_ID

    backend = kms_backends[ACCOUNT_ID][world.region]
    key = backend.keys.pop(old_id)
    key.id = new_id
    key.arn = f"arn:aws:kms:{world.region}:{ACCOUNT_ID}:key/{new_id}"
    backend.keys[new_id] = key
    return str(key.arn)
