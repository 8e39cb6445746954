"""The SSM agent's custom inventory file: the same content as PutInventory, written where the
agent's ``AWS-GatherSoftwareInventory`` association (``customInventory=Enabled``) collects it, so
the diagnosis reaches SSM through the agent even when our own API path is what is broken.

``<root>/<instance-id>/inventory/custom/VpceDoctor.json`` and ``VpceDoctorVerdict.json``, each
``{"SchemaVersion": "1.0", "TypeName": "Custom:…", "Content": [{…}, …]}`` with string values only
(amazon-ssm-agent agent/plugins/inventory/gatherers/custom/customGatherer.go reads every
``*.json`` there, and fails the whole custom gather above 20 files). Written atomically
(vpce_doctor.atomic): the agent may read at any moment. The folder is root's.
"""
from __future__ import annotations

import json
import os
from typing import Dict

from ..atomic import write_atomic
from ..report import Report
from .base import BoundedPublisher, Outcome
from .inventory import build_inventory
from .settings import PublishSettings, safe_file_stem

AGENT_FILE_LIMIT = 20  # customGatherer.go CustomInventoryCountLimit


class InventoryFilePublisher(BoundedPublisher):
    name = "inventory_file"

    def __init__(self, settings: PublishSettings) -> None:
        super().__init__(settings.inventory_file_timeout_s)
        self._root = settings.inventory_file_root
        self._type_names = (settings.inventory_type_name, settings.verdict_type_name)
        self._written: Dict[str, str] = {}  # path -> ContentHash of what we last wrote there

    def folder(self, instance_id: str) -> str:
        return os.path.join(self._root, instance_id, "inventory", "custom")

    def _publish(self, report: Report) -> Outcome:
        instance_id = report.facts.instance_id
        if not instance_id:
            return False, ("instance id unknown (IMDS failed and facts.instance_id is not set): "
                           "cannot name the agent's inventory folder")
        if not os.path.isdir(self._root):
            return False, f"{self._root} does not exist: is the SSM agent installed?"
        folder = self.folder(instance_id)
        try:
            os.makedirs(folder, mode=0o750, exist_ok=True)
        except OSError as exc:
            return False, f"cannot create {folder}: {exc.strerror or exc} (the folder is root's)"
        content = build_inventory(report, *self._type_names)
        written = 0
        for item in content.items:
            path = os.path.join(folder, safe_file_stem(item.type_name) + ".json")
            # Same rule as the ContentHash: rewrite when the diagnosis changed (or the file is gone),
            # so the agent uploads a change, not every latency wobble.
            if self._written.get(path) == item.content_hash and os.path.exists(path):
                continue
            data = json.dumps(item.file_document(), ensure_ascii=False, separators=(",", ":"))
            try:
                write_atomic(path, data, mode=0o644)
            except OSError as exc:
                return False, f"cannot write {path}: {exc.strerror or exc} (the folder is root's)"
            self._written[path] = item.content_hash
            written += 1
        try:
            count = sum(1 for n in os.listdir(folder) if n.endswith(".json"))
        except OSError:
            count = 0
        if count > AGENT_FILE_LIMIT:
            return False, (f"{folder} holds {count} .json files: the SSM agent fails the whole custom "
                           f"inventory gather above {AGENT_FILE_LIMIT}; remove some")
        what = f"wrote {written} file{'s' if written != 1 else ''}" if written else "unchanged diagnosis, files kept"
        notes = "; ".join(content.notes)
        return True, f"{what} in {folder}" + (f"; {notes}" if notes else "")
