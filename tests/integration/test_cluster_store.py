"""What the cluster store routes by itself: keyless commands, SCAN over every master, batches
across slots; the same raw replies as one server."""

from __future__ import annotations

import pytest

from coordinatord.store import Batch
from coordinatord.store.cluster import ClusterStore
from tests.conftest import cluster_settings
from tests.support_cluster import ValkeyCluster

pytestmark = pytest.mark.anyio


async def test_keyless_commands_and_a_scan_without_hash_tag_cover_the_cluster(cluster: ValkeyCluster) -> None:
    """PING and TIME answer as on one server; a pattern without hash tag finds keys on every master."""
    settings = cluster_settings(cluster)
    store = ClusterStore.from_url(cluster.url, settings)
    try:
        assert await store.ping() is True
        seconds, micros = await store.time()
        assert seconds > 0 and 0 <= micros < 1_000_000
        keys = [f"untagged-scan-test:{index}" for index in range(60)]  # spread over every slot range
        batch = Batch()
        for key in keys:
            batch.set(key, "v", 60)
        await store.run(batch)  # one batch, many slots: the pipeline splits it by node
        owners = {cluster.master_of(key).port for key in keys}
        assert len(owners) == 3
        found, more = await store.scan("untagged-scan-test:*", 1_000)
        assert sorted(found) == sorted(keys) and more is False
        assert await store.delete(keys[:1]) == 1
    finally:
        await store.aclose()
