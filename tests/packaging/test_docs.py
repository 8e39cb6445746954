"""docs/troubleshooting.md is generated from checks/causes.py and must stay in step with it."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "scripts" / "gen-troubleshooting.py"
TABLE = REPO / "docs" / "troubleshooting.md"


def _generator() -> ModuleType:
    # The script's name has a hyphen: load it from its path.
    spec = importlib.util.spec_from_file_location("gen_troubleshooting", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def test_troubleshooting_table_is_up_to_date() -> None:
    gen = _generator()
    expected = gen.render(gen.load_causes())
    assert TABLE.read_text(encoding="utf-8") == expected, (
        "docs/troubleshooting.md is out of date: run python3 scripts/gen-troubleshooting.py")


def test_table_has_one_row_per_cause_code_with_meaning_and_fix() -> None:
    from vpce_doctor.checks.causes import CAUSES

    rows = [line for line in TABLE.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    codes = [re.match(r"\| `([a-z0-9_]+)` \|", row).group(1) for row in rows]  # type: ignore[union-attr]
    assert codes == list(CAUSES)
    for row in rows:
        cells = re.split(r"(?<!\\)\|", row)[1:-1]  # escaped pipes stay inside their cell
        assert len(cells) == 4, row
        code, meaning, fix, _cli = (c.strip() for c in cells)
        assert meaning and fix, row
        # placeholders shown as &lt;name>; a literal brace of CLI shorthand ([{PrefixListId=…}]) is fine
        assert not re.search(r"\{[a-z_]+\}", meaning + fix) and "<" not in meaning + fix, row


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    gen = _generator()
    stale = tmp_path / "troubleshooting.md"
    stale.write_text("old\n", encoding="utf-8")
    assert gen.main(["--check", "--output", str(stale)]) == 1
    assert gen.main(["--output", str(stale)]) == 0
    assert gen.main(["--check", "--output", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == TABLE.read_text(encoding="utf-8")


# Paths the docs name as this repository's: markdown links and `backticked` paths under these folders.
_REPO_DIRS = ("agent/", "checks/", "systemd/", "packaging/", "tests/", "docs/", "scripts/", ".ci/")
_DOCS = ("README.md", "config.example.yaml", "docs/*.md", "*/README.md", "*/*/README.md", "tests/lab/SCENARIOS.md")


def test_docs_name_only_paths_that_exist() -> None:
    """Issue 14: docs mentioned paths the repository does not have. A path in another project is
    written as a link to it (https://…), not as one of ours."""
    missing = []
    for pattern in _DOCS:
        for doc in sorted(REPO.glob(pattern)):
            text = doc.read_text(encoding="utf-8")
            named = {(doc.parent / m.group(1)).resolve() for m in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
                     if "://" not in m.group(1) and not m.group(1).startswith("mailto:")}
            named |= {(REPO / m.group(1)).resolve() for m in re.finditer(r"`([A-Za-z0-9_./-]+)`", text)
                      if m.group(1).startswith(_REPO_DIRS)}
            missing += [f"{doc.relative_to(REPO)} names {p.relative_to(REPO) if REPO in p.parents else p}"
                        for p in sorted(named) if not p.exists()]
    assert not missing, "\n".join(missing)


def test_diagnosis_guide_names_only_real_cause_codes() -> None:
    """docs/diagnosis.md explains look-alikes by cause code: each code it names must exist."""
    from vpce_doctor.checks.causes import CAUSES

    text = (REPO / "docs" / "diagnosis.md").read_text(encoding="utf-8")
    named = {c for c in re.findall(r"`([a-z0-9_]+)`", text) if "_" in c}
    assert named and not named - set(CAUSES), sorted(named - set(CAUSES))
