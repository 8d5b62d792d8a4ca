"""The merchandising rules' file, as a merchandiser writes it, checked and made ready for the servers.

A merchandiser names items by the shop's own ids (SKU strings or integers); the servers read the INT64 ids
the build serves (a string SKU's stable hash, ``shoprank_client.ids``). ``resolve`` maps them and checks
every rule against the served repository's catalogue (``runtime/rules.py``), so nothing wrong reaches the
store: an error names the rule and its field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime import contract as c
from runtime.catalog import Catalog
from runtime.repository import serving_version
from runtime.rules import RuleError, parse_rules, rules_list
from runtime.tables import STORE_DIR
from shoprank_client.ids import stable_id


def served_id(raw: Any, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)) or (isinstance(raw, str) and not raw.strip()):
        raise RuleError(where, f"expected an item id (an integer or the shop's string id), got {raw!r}")
    if isinstance(raw, int):
        return raw
    text = raw.strip()
    return int(text) if text.lstrip("-").isdigit() else stable_id(text)


def resolve(text: str, repo: Path) -> str:
    """The rules' document with every item id as served, checked against ``repo``'s catalogue."""
    rules = rules_list(text)
    for i, rule in enumerate(rules):
        if isinstance(rule, dict) and isinstance(rule.get("items"), list):
            name = rule.get("id")
            where = f"rules[{i}]" + (f" (id {name!r})" if isinstance(name, str) else "") + ".items"
            rule["items"] = [served_id(item, where) for item in rule["items"]]
    resolved = json.dumps({"rules": rules})
    parse_rules(resolved, catalog_of(repo))
    return resolved


def catalog_of(repo: Path) -> Catalog:
    """The catalogue a served repository's topk reads (its serving version)."""
    return Catalog.load(Path(repo) / c.TOPK / str(serving_version(Path(repo))), STORE_DIR)
