"""What a JSON Schema cannot say about a Yui record, taught to Schemathesis.

The OpenAPI document says exactly what each field of a record may hold.
Three rules of the node depend on more than the value at hand, so no JSON
Schema can state them, and a generator that knows only the schema breaks
them at random:

- a reference (a field marked `x-yui-references: COLLECTION`) must name a
  record of that collection that exists on the node, else 422
  `invalid_reference`;
- a pilot result's `period_end` is not before its `period_start` (on an
  update, in the record as merged), else 422 `invalid_order`;
- a shared record must not contain the name of a person registered in the
  town (a worker's name or reading, a customer's contact), else 422
  `personal_data`: a worker named "000" makes every later shared text with
  "000" in it personal data.

So for a *positive* case only (one Schemathesis expects the node to accept)
this hook puts the id of a record it has just made in every reference,
dates in order, and a person's names where no generated text can contain
them (each gets a prefix 氏 / 連絡先). Negative cases are sent as generated,
and every check runs on every case.
"""

import os
import re

import requests
import schemathesis

BASE = os.environ["YUI_CONTRACT_BASE"]
TOKEN = os.environ["YUI_CONTRACT_TOKEN"]

RECORD_PATH = re.compile(r"^/api/v1/records/([a-z_]+)(?:/\{id\})?$")

# What the hook makes for a reference to point at. Fresh for every case:
# the run may delete any record it can list.
TARGETS = {
    "workers": {"name": "参照 ワーカー", "status": "active"},
    "customers": {"organisation": "参照商事", "stage": "active"},
    "pilot_results": {"title": "参照用の試行", "status": "running"},
}

# A person's names, as the personal-data guard registers them.
NAMES = {"workers": {"name": "氏", "name_kana": "氏"}, "customers": {"contact_name": "連絡先"}}


def _make(collection):
    fields = TARGETS.get(collection)
    if fields is None:
        raise RuntimeError(f"hooks.py makes no {collection} record to refer to")
    answer = requests.post(
        f"{BASE}/api/v1/records/{collection}",
        json={"fields": fields},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["id"]


def _schemas(operation):
    """The request body's `fields` schema of a record operation."""
    body = operation.definition.raw.get("requestBody", {})
    media = body.get("content", {}).get("application/json", {})
    schemas = operation.schema.raw_schema["components"]["schemas"]
    wrapper = schemas.get(media.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1], {})
    fields_ref = wrapper.get("properties", {}).get("fields", {}).get("$ref", "")
    return schemas.get(fields_ref.rsplit("/", 1)[-1], {}).get("properties", {})


def _references(operation):
    """{field: (collection, is_list)} of the references among the fields."""
    out = {}
    for name, schema in _schemas(operation).items():
        for branch in schema.get("anyOf", [schema]):
            if "x-yui-references" in branch:
                out[name] = (branch["x-yui-references"], False)
            elif "x-yui-references" in branch.get("items", {}):
                out[name] = (branch["items"]["x-yui-references"], True)
    return out


def _max_length(operation, name):
    schema = _schemas(operation).get(name, {})
    for branch in schema.get("anyOf", [schema]):
        if "maxLength" in branch:
            return branch["maxLength"]
    return None


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    match = RECORD_PATH.match(case.operation.path)
    method = case.operation.method.lower()
    if match is None or method not in ("post", "patch"):
        return case
    if not isinstance(case.body, dict) or not isinstance(case.body.get("fields"), dict):
        return case
    collection, fields = match.group(1), case.body["fields"]
    for name, (target, is_list) in _references(case.operation).items():
        value = fields.get(name)
        if is_list and isinstance(value, list) and value:
            made = _make(target)
            fields[name] = [made for _ in value]
        elif not is_list and isinstance(value, str):
            fields[name] = _make(target)
    for name, prefix in NAMES.get(collection, {}).items():
        value = fields.get(name)
        if isinstance(value, str):
            limit = _max_length(case.operation, name) or len(prefix) + len(value)
            fields[name] = (prefix + value)[:limit]
    if collection == "pilot_results":
        start, end = fields.get("period_start"), fields.get("period_end")
        if isinstance(start, str) and isinstance(end, str):
            if end < start:
                fields["period_start"], fields["period_end"] = end, start
        elif method == "patch":
            # One date changes: the other goes, so that the merged record
            # cannot hold them out of order.
            if isinstance(start, str):
                fields["period_end"] = None
            elif isinstance(end, str):
                fields["period_start"] = None
    return case
