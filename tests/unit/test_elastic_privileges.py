"""Privileges versus what each client of Elasticsearch calls.

A table of the HTTP calls each of our Elasticsearch clients makes, read from the clients' source at
the pinned releases, each mapped to the action Elasticsearch authorizes for it and from there to
the privileges that grant the action. Every call must be granted by the client's role in
elasticsearch/role-*.json, and every privilege a role grants must be needed by some call (least
privilege). A role that misses one (Grafana's health check without cluster `monitor`: 403) fails
here instead of in a user's first `make up`.

Sources (Elasticsearch 9.5, elastic/elasticsearch):
- privilege -> action patterns: x-pack/plugin/core/src/main/java/org/elasticsearch/xpack/core/
  security/authz/privilege/ClusterPrivilegeResolver.java (MONITOR_PATTERN) and IndexPrivilege.java
  (READ_AUTOMATON, VIEW_METADATA_AUTOMATON, CREATE_DOC_AUTOMATON, AUTO_CONFIGURE_AUTOMATON);
  docs: https://www.elastic.co/docs/reference/elasticsearch/security-privileges
- action names: the transport actions' NAME constants, as listed in the operator-privileges
  test (x-pack/plugin/security/.../operator/OperatorPrivilegesSingleNodeTests.java);
  the implied action of a bulk `create` item: x-pack/plugin/security/src/main/java/org/
  elasticsearch/xpack/security/authz/AuthorizationService.java (IMPLIED_CREATE_ACTION).
- composite requests (_bulk, _msearch) are authorized as a whole when any index privilege of the
  role grants the action, then per index for each item (AuthorizationService, RBACEngine).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

import pytest

from tests.conftest import REPO

DATA_STREAM = "logs-mlobs.inference-default"

# Privilege -> the action patterns it grants (wildcards `*`, as Elasticsearch's Automatons).
CLUSTER_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "monitor": (
        "cluster:monitor/*",
        "indices:admin/template/get",
        "indices:admin/index_template/get",
        "cluster:admin/component_template/get",
    ),
}
INDEX_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "read": ("indices:data/read/*",),
    "view_index_metadata": (
        "indices:admin/aliases/get",
        "indices:admin/get",
        "indices:admin/mappings/fields/get*",
        "indices:admin/mappings/get",
        "indices:admin/shards/search_shards",
        "indices:admin/validate/query*",
        "indices:monitor/settings/get",
        "indices:admin/ilm/explain",
        "indices:admin/data_stream/get",
        "indices:admin/resolve/index",
        "indices:data/read/field_caps*",
    ),
    "create_doc": (
        "indices:data/write/index",
        "indices:data/write/index[*",
        "indices:data/write/index:op_type/create",
        "indices:data/write/bulk*",
    ),
    "auto_configure": ("indices:admin/mapping/auto_put", "indices:admin/auto_create"),
    "create": ("indices:data/write/index*", "indices:data/write/bulk*"),
    "index": (
        "indices:data/write/index*",
        "indices:data/write/bulk*",
        "indices:data/write/update*",
    ),
    "write": ("indices:data/write/*", "indices:admin/mapping/auto_put"),
    "create_index": (
        "indices:admin/create",
        "indices:admin/auto_create",
        "indices:admin/data_stream/create",
    ),
    "all": ("indices:*",),
}


@dataclass(frozen=True)
class Call:
    """One HTTP call a client makes, and the action(s) Elasticsearch authorizes for it."""

    request: str
    action: str
    index: str | None = None  # None: a cluster action
    composite: bool = False  # _bulk, _msearch: authorized as a whole, then per item
    source: str = ""  # where the client makes it


@dataclass(frozen=True)
class Client:
    name: str
    role_file: str  # in elasticsearch/
    calls: tuple[Call, ...]


GRAFANA_SOURCE = "grafana/grafana v12.2.0 pkg/tsdb/elasticsearch"
LOGSTASH_SOURCE = (
    "logstash-plugins/logstash-output-elasticsearch v12.1.6 (bundled with Logstash 9.5), "
    "data-stream mode"
)

CLIENTS = (
    Client(
        "Grafana's Elasticsearch datasource",
        "role-reader.json",
        (
            Call(
                "GET /_cluster/health?wait_for_status=yellow",
                "cluster:monitor/health",
                source=f"{GRAFANA_SOURCE}/healthcheck.go (CheckHealth)",
            ),
            Call(
                "GET / (version and build flavour)",
                "cluster:monitor/main",
                source=f"{GRAFANA_SOURCE}/elasticsearch.go CallResource (empty path: the "
                "version); newer releases also at client creation (client/cluster_info.go)",
            ),
            Call(
                "POST /_msearch",
                "indices:data/read/msearch",
                composite=True,
                source=f"{GRAFANA_SOURCE}/client/client.go (every panel query)",
            ),
            Call("POST /_msearch (each search)", "indices:data/read/search", DATA_STREAM),
            Call(
                "GET /logs-mlobs.inference-*/_mapping",
                "indices:admin/mappings/get",
                DATA_STREAM,
                source=f"{GRAFANA_SOURCE}/elasticsearch.go CallResource (query editor fields)",
            ),
            Call(
                "GET /logs-mlobs.inference-*/_field_caps",
                "indices:data/read/field_caps",
                DATA_STREAM,
                source=f"{GRAFANA_SOURCE}/elasticsearch.go CallResource",
            ),
        ),
    ),
    Client(
        "Logstash's elasticsearch output",
        "role-writer.json",
        (
            Call(
                "HEAD / (health check of each host)",
                "cluster:monitor/main",
                source=f"{LOGSTASH_SOURCE}: http_client/pool.rb healthcheck!",
            ),
            Call(
                "GET / (version; cluster_uuid)",
                "cluster:monitor/main",
                source=f"{LOGSTASH_SOURCE}: pool.rb get_es_version, "
                "common.rb discover_cluster_uuid",
            ),
            Call(
                "GET /_license (a host without a readable license is marked dead)",
                "cluster:monitor/xpack/license/get",
                source=f"{LOGSTASH_SOURCE}: pool.rb get_license, license_checker.rb",
            ),
            Call(
                "POST /_bulk",
                "indices:data/write/bulk",
                composite=True,
                source=f"{LOGSTASH_SOURCE}: http_client.rb bulk; no template or ILM calls "
                "(elasticsearch.rb setup_template_manager_defaults, ilm.rb ilm_in_use?)",
            ),
            Call("POST /_bulk (each shard)", "indices:data/write/bulk[s]", DATA_STREAM),
            Call(
                "POST /_bulk (each `create` item)",
                "indices:data/write/index:op_type/create",
                DATA_STREAM,
                source=f"{LOGSTASH_SOURCE}: data_stream_support.rb (action create)",
            ),
            Call(
                "POST /_bulk (first write creates the data stream)",
                "indices:admin/auto_create",
                DATA_STREAM,
            ),
            Call(
                "POST /_bulk (a new features.* field adds a mapping)",
                "indices:admin/mapping/auto_put",
                DATA_STREAM,
            ),
        ),
    ),
)


def _pattern(wildcard: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in wildcard.split("*")))


def _grants(patterns: tuple[str, ...], action: str) -> bool:
    return any(_pattern(p).fullmatch(action) for p in patterns)


@cache
def _role(file: str) -> dict:
    return json.loads((REPO / "elasticsearch" / file).read_text())


def _known(table: dict[str, tuple[str, ...]], names: list[str], kind: str) -> None:
    unknown = set(names) - set(table)
    assert not unknown, (
        f"{kind} privileges {sorted(unknown)}: add their action patterns from Elasticsearch's "
        "source to this table first"
    )


def _granted_by(role: dict, call: Call) -> set[str]:
    """The role's privileges that grant this call (empty: Elasticsearch answers 403)."""
    if call.index is None:
        names = role.get("cluster", [])
        _known(CLUSTER_PRIVILEGES, names, "cluster")
        return {n for n in names if _grants(CLUSTER_PRIVILEGES[n], call.action)}
    granted = set()
    for group in role.get("indices", []):
        _known(INDEX_PRIVILEGES, group["privileges"], "index")
        covers = call.composite or any(
            _pattern(name).fullmatch(call.index) for name in group["names"]
        )
        if covers:
            granted |= {p for p in group["privileges"] if _grants(INDEX_PRIVILEGES[p], call.action)}
    return granted


def _as_authorized(call: Call) -> Call:
    # A composite request is checked against the role's index privileges on any index.
    return Call(call.request, call.action, DATA_STREAM, True) if call.composite else call


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.name)
def test_every_call_of_a_client_is_granted_by_its_role(client):
    role = _role(client.role_file)
    refused = [
        f"{call.request} ({call.action}, {call.source or 'see above'})"
        for call in client.calls
        if not _granted_by(role, _as_authorized(call))
    ]
    assert not refused, f"{client.role_file} gets 403 on: {refused}"


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.name)
def test_every_privilege_of_a_role_is_needed_by_a_call(client):
    role = _role(client.role_file)
    used = set().union(*(_granted_by(role, _as_authorized(call)) for call in client.calls))
    granted = set(role.get("cluster", [])) | {
        p for group in role.get("indices", []) for p in group["privileges"]
    }
    assert granted <= used, f"{client.role_file} grants {sorted(granted - used)} that no call needs"


def test_roles_name_only_the_inference_data_stream():
    for client in CLIENTS:
        for group in _role(client.role_file)["indices"]:
            assert group["names"] == ["logs-mlobs.inference-*"], client.role_file


def test_the_table_knows_refusals():
    """The check can fail: a role without cluster privileges is refused Grafana's health check."""
    grafana = CLIENTS[0]
    [health] = [c for c in grafana.calls if c.action == "cluster:monitor/health"]
    without_cluster = {k: v for k, v in _role(grafana.role_file).items() if k != "cluster"}
    assert not _granted_by(without_cluster, health)
    assert not _granted_by({"cluster": ["monitor"]}, Call("PUT /_bulk", "indices:data/write/bulk"))


def test_every_role_has_a_client_table():
    # Kibana logs in as the built-in kibana_system, whose role Elastic maintains (checked in
    # tests/unit/test_compose.py::test_secure_defaults).
    roles = {path.name for path in (REPO / "elasticsearch").glob("role-*.json")}
    assert roles == {client.role_file for client in CLIENTS}, "a role without a client table"
