"""The delivery guarantee the docs state is the one the settings give.

Logstash's persisted queue makes an event durable only at a checkpoint (elastic/logstash v9.5.2
docs/reference/persistent-queues.md, "Controlling durability"): with queue.checkpoint.writes N, a
crash can lose up to N events that the beats input already acknowledged to Filebeat. So "at least
once" (nothing acknowledged is lost) needs N = 1, a persisted queue, and Filebeat's registry on
persistent storage; a document that states a window instead must state this N.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import REPO
from tests.support.stack_files import compose, filebeat_config

AT_LEAST_ONCE = re.compile(
    r"at[- ]least[- ]once|nothing (?:acknowledged )?is lost|no (?:acknowledged )?event is lost",
    re.IGNORECASE,
)
WINDOW = re.compile(r"up to (\d+) (?:acknowledged |delivered )?events", re.IGNORECASE)
# Where the guarantee is stated.
DOCUMENTS = ["README.md", "logstash/config/logstash.yml"]


def _logstash() -> dict:
    return yaml.safe_load((REPO / "logstash/config/logstash.yml").read_text())


def _claims(document: str) -> tuple[bool, set[int]]:
    text = re.sub(r"[\s#]+", " ", (REPO / document).read_text())
    # A sentence about Logstash's default explains the setting; it is not this stack's window.
    windows = {
        int(n)
        for sentence in re.split(r"(?<=[.;])\s", text)
        if "default" not in sentence
        for n in WINDOW.findall(sentence)
    }
    return bool(AT_LEAST_ONCE.search(text)), windows


def _checkpoint_writes() -> int:
    settings = _logstash()
    assert settings.get("queue.type") == "persisted", "no persisted queue: a restart loses events"
    return int(settings.get("queue.checkpoint.writes", 1024))  # Logstash's default


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_stated_guarantee_matches_the_checkpoint_setting(document):
    at_least_once, windows = _claims(document)
    assert at_least_once or windows, f"{document} states no delivery guarantee"
    writes = _checkpoint_writes()
    if at_least_once:
        assert writes == 1, (
            f"{document} promises at-least-once delivery, but queue.checkpoint.writes is {writes}: "
            f"a crash can lose up to {writes} acknowledged events"
        )
    assert windows <= {writes}, f"{document} states a window of {windows}, the setting is {writes}"


def test_filebeat_keeps_its_registry_on_a_volume():
    """The other half: Filebeat resends what Logstash did not acknowledge, after its restart too."""
    registry = filebeat_config()["path.data"]
    mounts = {
        volume.split(":")[1]: volume.split(":")[0]
        for volume in compose()["services"]["filebeat"]["volumes"]
    }
    assert registry in mounts and mounts[registry] in compose()["volumes"]
